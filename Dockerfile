# docker build -t <registry>/datakit-ebpf .
# Build: the eBPF objects, the native addon and the TypeScript (scripts/build.sh).
FROM node:20-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      clang llvm libbpf-dev libelf-dev zlib1g-dev bpftool make g++ python3 pkg-config \
 && rm -rf /var/lib/apt/lists/*
# build.sh points node-gyp at Debian's Node headers (--nodedir=/usr); this image has them in /usr/local.
RUN [ -e /usr/include/node ] || ln -s /usr/local/include/node /usr/include/node
WORKDIR /src
COPY package.json package-lock.json .npmrc ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN bash scripts/build.sh && npm prune --omit=dev

# Run: Node, the shared libraries the addon links (libbpf, libelf, zlib) and what
# src/paths.ts and bin/datakit-ebpf load.
FROM node:20-bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libbpf1 libelf1 zlib1g \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/datakit-ebpf
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/bin ./bin
COPY --from=build /src/dist/src ./dist/src
COPY --from=build /src/build/bpf ./build/bpf
COPY --from=build /src/native/build/Release/datakit_ebpf.node ./native/build/Release/
ENTRYPOINT ["bin/datakit-ebpf"]
