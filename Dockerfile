# sudo npm run package && docker build -t <registry>/datakit-ebpf .
# The image is the .deb of build/package/ installed on Debian 12: the same tree as
# on a host (/opt/datakit-ebpf, with its own Node.js 24, libbpf and libelf), on a
# base with nothing more than glibc, libstdc++ and zlib. The .deb is bind-mounted
# for the install, so no layer keeps a copy of it.
FROM debian:bookworm-slim
RUN --mount=type=bind,source=build/package,target=/pkg \
    dpkg -i /pkg/datakit-ebpf_*_amd64.deb \
 && /opt/datakit-ebpf/bin/datakit-ebpf --version
ENTRYPOINT ["/opt/datakit-ebpf/bin/datakit-ebpf"]
