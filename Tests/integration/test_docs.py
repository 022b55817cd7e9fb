"""The README is a front page that tells the truth: short, its Dockerfile and Deployment the
files the tests build and run, and every relative link in it and in docs/ resolving (to a file,
and to a heading of it when it names one)."""
import re

import pytest

from conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, flags=re.M)}


def test_the_readme_is_a_front_page():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250
    for subject in ("probe", "supervisor", "readiness", "health-endpoint", "runtimes", "releases", "security", "performance", "testing"):
        assert (ROOT / "docs" / f"{subject}.md").exists(), subject


def test_the_readmes_dockerfile_and_deployment_are_the_tested_files():
    readme = (ROOT / "README.md").read_text()
    assert "```dockerfile\n" + (ROOT / "docker" / "Dockerfile.release").read_text() + "```" in readme
    assert "```yaml\n" + (ROOT / "k8s" / "deployment.yaml").read_text() + "```" in readme


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_relative_link_resolves(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target):
            continue  # an absolute URL
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.name}: {target}"
        if anchor:
            assert anchor in anchors(file), f"{page.name}: {target}"
