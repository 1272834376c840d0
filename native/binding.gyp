{
  "targets": [
    {
      "target_name": "datakit_ebpf",
      "sources": ["addon.cc", "ringbuf.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      # libbpf and libelf are found beside the addon first ($ORIGIN, as an RPATH so
      # that it holds for libbpf's own libelf too): the packages ship them there
      # (scripts/package.sh); a checkout uses the system's.
      "libraries": ["-lbpf", "-lelf", "-lz"],
      "ldflags": ["-Wl,-rpath,'$$ORIGIN'", "-Wl,--disable-new-dtags"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-fexceptions", "-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"]
    }
  ]
}
