#!/usr/bin/env bash
# Installs, only when missing, what building and testing grpc-init needs: Debian packages through
# apt-get, Python peers into .venv, and the grpc-go and grpc-java test servers into .build/peers.
# Usage: scripts/install-deps.sh [--bench]     (--bench adds what the benchmarks compare against)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(libssl-dev zlib1g-dev golang-go golang-google-grpc-dev openssl file util-linux bsdutils iproute2 gcc libc6-dev binutils podman runc
          ca-certificates strace gdb tini
          default-jdk-headless libgrpc-java libnetty-java libperfmark-java libgoogle-gson-java libprotobuf-java
          libgeronimo-annotation-1.3-spec-java libnetty-tcnative-java libnetty-tcnative-jni protobuf-compiler
          protobuf-compiler-grpc-java-plugin grpc-proto)
# The CRI tests (Tests/integration/test_cri.py) run a containerd of their own, on their own socket.
packages+=(containerd)
# The metrics tests (Tests/integration/test_metrics.py): promtool, and a Prometheus server of their own.
packages+=(prometheus)
# The probe's instruction budget (Tests/integration/test_probe_cost.py) and scripts/bench-instructions.sh.
packages+=(valgrind)
if [ "${1:-}" = "--bench" ]; then packages+=(hyperfine); fi
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv 2>/dev/null || {
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv .venv
    }
fi
# Installed again whenever the pinned versions are not all there.
.venv/bin/python -m pip freeze 2>/dev/null | sort > .venv/installed.txt || true
if [ -n "$(grep -v '^#' Tests/requirements.txt | sort | comm -23 - .venv/installed.txt)" ]; then
    .venv/bin/pip install -q -r Tests/requirements.txt
fi

# The launcher that measures a probe's peak RSS, and the signal storm of the supervisor's tests.
for peer in measure storm; do
    if [ ! -x .build/peers/$peer ] || [ Tests/peers/$peer/$peer.c -nt .build/peers/$peer ]; then
        mkdir -p .build/peers
        cc -O2 -Wall -o .build/peers/$peer Tests/peers/$peer/$peer.c
    fi
done

# The grpc-go peers, built from Debian's grpc-go in GOPATH mode: static, no module download.
for peer in goserver goprobe; do
    out=.build/peers/$peer
    if [ ! -x "$out" ] || [ "Tests/peers/$peer/main.go" -nt "$out" ]; then
        mkdir -p .build/peers .build/gopath
        (cd "Tests/peers/$peer" &&
            GO111MODULE=off GOPATH="$PWD/../../../.build/gopath:/usr/share/gocode" CGO_ENABLED=0 \
            go build -o "../../../$out" .)
    fi
done

# The grpc-java peer (Netty transport), compiled against Debian's jars: the health service generated
# from grpc-proto's health.proto (libgrpc-java has no grpc-services); Debian's libgrpc-java does not
# depend on the Netty, PerfMark and Gson jars it runs with (they are in the list above). Debian's
# Netty has no ALPN over the JDK's TLS, which gRPC needs: TLS is Netty's OpenSSL engine
# (netty-tcnative), whose library Netty loads only under the name libnetty_tcnative.so. A
# class-data archive, dumped by one run that exits once it listens, shortens the JVM's start-up.
# The archive holds the jar's absolute path: a tree copied elsewhere builds its own.
java_out=$PWD/.build/peers/javaserver
java_src=Tests/peers/javaserver/HealthServer.java
if [ ! -x "$java_out/javaserver" ] || [ "$java_src" -nt "$java_out/javaserver" ] || [ "$0" -nt "$java_out/javaserver" ] ||
   ! grep -qxF "here=\"$java_out\"" "$java_out/javaserver"; then
    rm -rf "$java_out" && mkdir -p "$java_out/gen" "$java_out/classes" "$java_out/lib"
    cp "$(dpkg -L libnetty-tcnative-jni | grep '/libnetty-tcnative\.so$')" "$java_out/lib/libnetty_tcnative.so"
    jars=/usr/share/java
    classpath=$(printf "$jars/%s.jar:" grpc-api grpc-core grpc-netty grpc-protobuf grpc-protobuf-lite grpc-stub grpc-context \
        protobuf guava perfmark-api gson netty-buffer netty-codec netty-codec-http netty-codec-http2 netty-codec-socks \
        netty-common netty-handler netty-handler-proxy netty-resolver netty-transport netty-tcnative)
    protoc -I/usr/share/grpc-proto --java_out="$java_out/gen" --grpc-java_out="$java_out/gen" \
        --plugin=protoc-gen-grpc-java=/usr/bin/grpc_java_plugin grpc/health/v1/health.proto
    # The generated stub's @javax.annotation.Generated is needed to compile it, not to run it.
    javac -nowarn -d "$java_out/classes" -cp "$classpath$jars/geronimo-annotation-1.3-spec.jar" \
        "$java_out"/gen/io/grpc/health/v1/*.java "$java_src" 2>"$java_out/javac.log" || { cat "$java_out/javac.log"; exit 1; }
    jar cf "$java_out/HealthServer.jar" -C "$java_out/classes" .
    rm -rf "$java_out/gen" "$java_out/classes"
    jvm_flags="-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xmx128m -Xlog:disable -Xlog:all=warning:stderr"
    timeout 120 java $jvm_flags -Djava.library.path="$java_out/lib" -XX:ArchiveClassesAtExit="$java_out/HealthServer.jsa" \
        -cp "$java_out/HealthServer.jar:$classpath" HealthServer -exit-when-ready >/dev/null 2>&1 ||
        echo "warning: no class-data archive for the grpc-java peer; it starts slower"
    cat > "$java_out/javaserver.tmp" <<EOF
#!/bin/sh
# The grpc-java health server of the integration tests (Tests/peers/javaserver/HealthServer.java).
here="$java_out"
exec java $jvm_flags -Djava.library.path="\$here/lib" -XX:SharedArchiveFile="\$here/HealthServer.jsa" -Xshare:auto \\
    -cp "\$here/HealthServer.jar:$classpath" HealthServer "\$@"
EOF
    chmod +x "$java_out/javaserver.tmp"
    mv "$java_out/javaserver.tmp" "$java_out/javaserver"
fi
