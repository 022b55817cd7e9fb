// Runs on the build machine while the package builds; nothing of it is linked into grpc-init.
import Glibc
import PackagePlugin

/// Stamps the version scripts/version.sh gives into the executable's sources as `buildVersion`,
/// so a plain `swift build` says which commit it was built from. The manifest cannot do it: its
/// evaluation is cached until Package.swift changes, so a new commit would keep the old version.
/// SwiftPM runs a build command only when one of its inputs changed, so the inputs are what the
/// version depends on: the git state (HEAD, the index, HEAD's reflog, the tags and branches) and
/// the files and directories the binary is built from (for the dirty mark).
@main
struct BuildVersion: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let root = context.package.directoryURL
        let output = context.pluginWorkDirectoryURL.appending(path: "BuildVersion.swift")
        var inputs = ["Package.swift", "Sources", "scripts/version.sh", "scripts/link-order.txt", "scripts/link-order-notls.txt"]
            .map { root.appending(path: $0).path }
        for module in context.package.targets.compactMap({ $0.sourceModule }) where module.kind != .test {
            inputs.append(module.directoryURL.path)
            for file in module.sourceFiles {
                inputs += [file.url.path, file.url.deletingLastPathComponent().path]
            }
        }
        if let (gitDirectory, commonDirectory) = Self.gitDirectories(root.path) {
            inputs += [gitDirectory, gitDirectory + "/HEAD", gitDirectory + "/index", gitDirectory + "/logs/HEAD",
                       commonDirectory + "/packed-refs", commonDirectory + "/refs/tags", commonDirectory + "/refs/heads"]
        }
        // SwiftPM fails a build whose command names an input that does not exist.
        let existing = Set(inputs).filter { access($0, F_OK) == 0 }.sorted()
        return [.buildCommand(displayName: "Stamping the version", executable: .init(filePath: "/bin/sh"),
                              arguments: [root.appending(path: "scripts/version.sh").path, "--swift", output.path],
                              inputFiles: existing.map { .init(filePath: $0) }, outputFiles: [output])]
    }

    /// The repository's git directory and common directory (they differ in a linked worktree,
    /// where `.git` is a file naming the first); nil outside git.
    static func gitDirectories(_ root: String) -> (String, String)? {
        let dotGit = root + "/.git"
        var status = stat()
        guard stat(dotGit, &status) == 0 else { return nil }
        if status.st_mode & S_IFMT == S_IFDIR { return (dotGit, dotGit) }
        guard let line = firstLine(dotGit), line.hasPrefix("gitdir: ") else { return nil }
        let gitDirectory = absolute(String(line.dropFirst("gitdir: ".count)), from: root)
        let common = firstLine(gitDirectory + "/commondir").map { absolute($0, from: gitDirectory) } ?? gitDirectory
        return (gitDirectory, common)
    }

    static func absolute(_ path: String, from base: String) -> String {
        path.hasPrefix("/") ? path : base + "/" + path
    }

    static func firstLine(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(line) }
        guard getline(&line, &capacity, file) > 0, let line else { return nil }
        return String(cString: line).split(separator: "\n").first.map(String.init)
    }
}
