// Thin, synchronous, handle-based N-API binding over libbpf.
//
// Everything is addressed by small integer handles (objects, links, rings);
// all argument shaping and typing lives in src/bpf/native.ts, which is the only
// caller. Errors become JS exceptions carrying the operation, errno and the
// tail of libbpf's log. Everything still open is released when the
// environment is torn down, and links are never pinned, so the kernel drops
// every program and map when the process dies, even on SIGKILL.
#include <napi.h>
#include <uv.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <linux/if_ether.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ringbuf.h"

// Exported and never inlined so that a uprobe can find it by name.
extern "C" __attribute__((noinline, visibility("default"))) uint32_t datakit_ebpf_probe_target(uint32_t value) {
  asm volatile("" ::: "memory");
  return value + 1;
}

namespace {

// ---- libbpf log capture: kept so errors can say what the verifier said ----

std::string g_log;
constexpr size_t kLogCap = 32 * 1024;

int CaptureLibbpfLog(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (level == LIBBPF_DEBUG && !getenv("DATAKIT_EBPF_LIBBPF_DEBUG")) return 0;
  // the verifier's log arrives as one message of any size: format it whole
  va_list copy;
  va_copy(copy, args);
  int n = vsnprintf(nullptr, 0, fmt, copy);
  va_end(copy);
  if (n <= 0) return 0;
  std::string msg(static_cast<size_t>(n) + 1, '\0');
  vsnprintf(msg.data(), msg.size(), fmt, args);
  msg.resize(static_cast<size_t>(n));
  g_log += msg;
  if (g_log.size() > kLogCap) g_log.erase(0, g_log.size() - kLogCap);
  return 0;
}

[[noreturn]] void ThrowOp(Napi::Env env, const std::string& op, int err) {
  if (err < 0) err = -err;
  std::string msg = op + ": " + strerror(err) + " (errno " + std::to_string(err) + ")";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("op", Napi::String::New(env, op));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("libbpfLog", Napi::String::New(env, g_log));
  g_log.clear();
  throw e;
}

struct Object {
  bpf_object* obj = nullptr;
  std::vector<uint8_t> elf;  // libbpf reads the ELF lazily until load
};

struct Link {
  uint32_t object = 0;
  bpf_link* link = nullptr;
  int socket_fd = -1;  // socket filters: closing the socket detaches
};

struct Ring {
  napi_env env = nullptr;
  RingReader reader;
  uv_poll_t* poll = nullptr;
  Napi::FunctionReference on_data;
  Napi::Reference<Napi::Buffer<uint8_t>> buffer_ref;
  uint8_t* buffer = nullptr;
  size_t capacity = 0;
};

class Addon : public Napi::Addon<Addon> {
 public:
  Addon(Napi::Env env, Napi::Object exports) {
    libbpf_set_print(CaptureLibbpfLog);
    DefineAddon(exports, {
        InstanceMethod("openObject", &Addon::OpenObject),
        InstanceMethod("setInitialValue", &Addon::SetInitialValue),
        InstanceMethod("setMaxEntries", &Addon::SetMaxEntries),
        InstanceMethod("setAutoload", &Addon::SetAutoload),
        InstanceMethod("reuseMap", &Addon::ReuseMap),
        InstanceMethod("loadObject", &Addon::LoadObject),
        InstanceMethod("closeObject", &Addon::CloseObject),
        InstanceMethod("programs", &Addon::Programs),
        InstanceMethod("maps", &Addon::Maps),
        InstanceMethod("attachRawTracepoint", &Addon::AttachRawTracepoint),
        InstanceMethod("attachTracepoint", &Addon::AttachTracepoint),
        InstanceMethod("attachTrace", &Addon::AttachTrace),
        InstanceMethod("attachKprobe", &Addon::AttachKprobe),
        InstanceMethod("attachUprobe", &Addon::AttachUprobe),
        InstanceMethod("attachCgroup", &Addon::AttachCgroup),
        InstanceMethod("attachSocketFilter", &Addon::AttachSocketFilter),
        InstanceMethod("detach", &Addon::Detach),
        InstanceMethod("mapLookup", &Addon::MapLookup),
        InstanceMethod("mapUpdate", &Addon::MapUpdate),
        InstanceMethod("mapDelete", &Addon::MapDelete),
        InstanceMethod("mapBatch", &Addon::MapBatch),
        InstanceMethod("mapDeleteBatch", &Addon::MapDeleteBatch),
        InstanceMethod("numPossibleCpus", &Addon::NumPossibleCpus),
        InstanceMethod("kernelBtfFind", &Addon::KernelBtfFind),
        InstanceMethod("libbpfVersion", &Addon::LibbpfVersion),
        InstanceMethod("kernelHasHelper", &Addon::KernelHasHelper),
        InstanceMethod("ringOpen", &Addon::RingOpen),
        InstanceMethod("ringDrain", &Addon::RingDrain),
        InstanceMethod("ringClose", &Addon::RingClose),
        InstanceMethod("ringWatch", &Addon::RingWatch),
        InstanceMethod("probeTarget", &Addon::ProbeTarget),
    });
  }

  ~Addon() {
    // Environment teardown (process exit or worker end): release everything.
    for (auto& [id, ring] : rings_) StopRing(ring.get());
    rings_.clear();
    for (auto& [id, link] : links_) DestroyLink(link);
    links_.clear();
    for (auto& [id, o] : objects_) bpf_object__close(o.obj);
    objects_.clear();
    btf__free(vmlinux_btf_);
  }

 private:
  uint32_t next_id_ = 1;
  std::map<uint32_t, Object> objects_;
  std::map<uint32_t, Link> links_;
  std::map<uint32_t, std::unique_ptr<Ring>> rings_;
  btf* vmlinux_btf_ = nullptr;  // the running kernel's BTF, loaded on first question

  // ---- argument helpers ----

  static uint32_t U32(const Napi::CallbackInfo& info, size_t i) {
    if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a number");
    return info[i].As<Napi::Number>().Uint32Value();
  }
  static int64_t I64(const Napi::CallbackInfo& info, size_t i) {
    if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a number");
    return info[i].As<Napi::Number>().Int64Value();
  }
  static std::string Str(const Napi::CallbackInfo& info, size_t i) {
    if (!info[i].IsString()) throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a string");
    return info[i].As<Napi::String>().Utf8Value();
  }
  static Napi::Buffer<uint8_t> Buf(const Napi::CallbackInfo& info, size_t i) {
    if (!info[i].IsBuffer()) throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a Buffer");
    return info[i].As<Napi::Buffer<uint8_t>>();
  }

  Object& GetObject(Napi::Env env, uint32_t id) {
    auto it = objects_.find(id);
    if (it == objects_.end()) throw Napi::Error::New(env, "no such BPF object handle " + std::to_string(id));
    return it->second;
  }
  bpf_map* GetMap(Napi::Env env, uint32_t obj, const std::string& name) {
    bpf_map* m = bpf_object__find_map_by_name(GetObject(env, obj).obj, name.c_str());
    if (!m) throw Napi::Error::New(env, "no map named " + name);
    return m;
  }
  bpf_program* GetProgram(Napi::Env env, uint32_t obj, const std::string& name) {
    bpf_program* p = bpf_object__find_program_by_name(GetObject(env, obj).obj, name.c_str());
    if (!p) throw Napi::Error::New(env, "no program named " + name);
    return p;
  }
  Napi::Value NewLink(Napi::Env env, uint32_t obj, bpf_link* link, int socket_fd, const std::string& op) {
    if (!link && socket_fd < 0) ThrowOp(env, op, errno);
    uint32_t id = next_id_++;
    links_[id] = Link{obj, link, socket_fd};
    return Napi::Number::New(env, id);
  }
  static void DestroyLink(Link& l) {
    if (l.link) bpf_link__destroy(l.link);
    if (l.socket_fd >= 0) close(l.socket_fd);
    l.link = nullptr;
    l.socket_fd = -1;
  }

  // ---- objects ----

  // openObject(elf: Buffer, name: string) -> handle
  Napi::Value OpenObject(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto elf = Buf(info, 0);
    std::string name = Str(info, 1);
    Object o;
    o.elf.assign(elf.Data(), elf.Data() + elf.Length());
    LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = name.c_str());
    g_log.clear();
    o.obj = bpf_object__open_mem(o.elf.data(), o.elf.size(), &opts);
    if (!o.obj) ThrowOp(env, "open " + name, errno);
    uint32_t id = next_id_++;
    objects_[id] = std::move(o);
    return Napi::Number::New(env, id);
  }

  // setInitialValue(obj, mapName, data, offset): e.g. ".rodata" config before load
  Napi::Value SetInitialValue(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    bpf_map* m = GetMap(env, U32(info, 0), Str(info, 1));
    auto data = Buf(info, 2);
    size_t offset = U32(info, 3);
    size_t size = 0;
    const void* init = bpf_map__initial_value(m, &size);
    if (!init) throw Napi::Error::New(env, "map " + Str(info, 1) + " has no initial value");
    if (offset + data.Length() > size)
      throw Napi::RangeError::New(env, "initial value write past the end of " + Str(info, 1));
    // Patch a copy and set it whole: libbpf 1.1 hands out a const view.
    std::vector<uint8_t> value(static_cast<const uint8_t*>(init), static_cast<const uint8_t*>(init) + size);
    memcpy(value.data() + offset, data.Data(), data.Length());
    int err = bpf_map__set_initial_value(m, value.data(), size);
    if (err) ThrowOp(env, "set initial value of " + Str(info, 1), err);
    return env.Undefined();
  }

  Napi::Value SetMaxEntries(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string name = Str(info, 1);
    int err = bpf_map__set_max_entries(GetMap(env, U32(info, 0), name), U32(info, 2));
    if (err) ThrowOp(env, "set max_entries of " + name, err);
    return env.Undefined();
  }

  // setAutoload(obj, prog, load): a program left out is neither relocated nor
  // loaded, so an object can hold variants for kernels that lack some hooks.
  Napi::Value SetAutoload(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string name = Str(info, 1);
    int err = bpf_program__set_autoload(GetProgram(env, U32(info, 0), name), info[2].ToBoolean().Value());
    if (err) ThrowOp(env, "set autoload of " + name, err);
    return env.Undefined();
  }

  // reuseMap(obj, mapName, fd): the object uses a map another object created
  // (httpflow reads netflow's connection table).
  Napi::Value ReuseMap(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string name = Str(info, 1);
    int err = bpf_map__reuse_fd(GetMap(env, U32(info, 0), name), static_cast<int>(U32(info, 2)));
    if (err) ThrowOp(env, "reuse map " + name, err);
    return env.Undefined();
  }

  Napi::Value LoadObject(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Object& o = GetObject(env, U32(info, 0));
    g_log.clear();
    // The verifier gives up with EAGAIN when a signal is pending, and libbpf's
    // few retries fail the same way under a steady stream of them (a CPU
    // profiler's SIGPROF): signals wait for the load.
    sigset_t all, before;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &before);
    int err = bpf_object__load(o.obj);
    pthread_sigmask(SIG_SETMASK, &before, nullptr);
    if (err) ThrowOp(env, std::string("load ") + bpf_object__name(o.obj), err);
    o.elf.clear();
    o.elf.shrink_to_fit();
    return env.Undefined();
  }

  Napi::Value CloseObject(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t id = U32(info, 0);
    Object& o = GetObject(env, id);
    for (auto it = links_.begin(); it != links_.end();) {
      if (it->second.object == id) {
        DestroyLink(it->second);
        it = links_.erase(it);
      } else {
        ++it;
      }
    }
    bpf_object__close(o.obj);
    objects_.erase(id);
    return env.Undefined();
  }

  Napi::Value Programs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    bpf_object* obj = GetObject(env, U32(info, 0)).obj;
    Napi::Array out = Napi::Array::New(env);
    bpf_program* p;
    uint32_t i = 0;
    bpf_object__for_each_program(p, obj) {
      Napi::Object e = Napi::Object::New(env);
      e.Set("name", bpf_program__name(p));
      e.Set("section", bpf_program__section_name(p));
      e.Set("fd", bpf_program__fd(p));
      out.Set(i++, e);
    }
    return out;
  }

  Napi::Value Maps(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    bpf_object* obj = GetObject(env, U32(info, 0)).obj;
    Napi::Array out = Napi::Array::New(env);
    bpf_map* m;
    uint32_t i = 0;
    bpf_object__for_each_map(m, obj) {
      Napi::Object e = Napi::Object::New(env);
      e.Set("name", bpf_map__name(m));
      e.Set("fd", bpf_map__fd(m));
      e.Set("type", static_cast<uint32_t>(bpf_map__type(m)));
      e.Set("keySize", bpf_map__key_size(m));
      e.Set("valueSize", bpf_map__value_size(m));
      e.Set("maxEntries", bpf_map__max_entries(m));
      out.Set(i++, e);
    }
    return out;
  }

  // ---- attach points ----

  Napi::Value AttachRawTracepoint(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t obj = U32(info, 0);
    std::string tp = Str(info, 2);
    g_log.clear();
    bpf_link* l = bpf_program__attach_raw_tracepoint(GetProgram(env, obj, Str(info, 1)), tp.c_str());
    return NewLink(env, obj, l, -1, "attach raw tracepoint " + tp);
  }

  Napi::Value AttachTracepoint(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t obj = U32(info, 0);
    std::string category = Str(info, 2), name = Str(info, 3);
    g_log.clear();
    bpf_link* l = bpf_program__attach_tracepoint(GetProgram(env, obj, Str(info, 1)), category.c_str(), name.c_str());
    return NewLink(env, obj, l, -1, "attach tracepoint " + category + ":" + name);
  }

  // attachTrace(obj, prog): fentry/fexit, at the kernel function its section names
  Napi::Value AttachTrace(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t obj = U32(info, 0);
    bpf_program* p = GetProgram(env, obj, Str(info, 1));
    g_log.clear();
    bpf_link* l = bpf_program__attach_trace(p);
    return NewLink(env, obj, l, -1, std::string("attach ") + bpf_program__section_name(p));
  }

  // attachKprobe(obj, prog, retprobe, funcName)
  Napi::Value AttachKprobe(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t obj = U32(info, 0);
    bool ret = info[2].ToBoolean().Value();
    std::string func = Str(info, 3);
    LIBBPF_OPTS(bpf_kprobe_opts, opts, .retprobe = ret);
    g_log.clear();
    bpf_link* l = bpf_program__attach_kprobe_opts(GetProgram(env, obj, Str(info, 1)), func.c_str(), &opts);
    return NewLink(env, obj, l, -1, std::string("attach ") + (ret ? "kretprobe " : "kprobe ") + func);
  }

  // attachUprobe(obj, prog, retprobe, pid (-1 = all), binaryPath, offset, funcName)
  // With a function name libbpf resolves the symbol from the ELF (offset is
  // then relative to it); with an empty name the offset is a file offset.
  Napi::Value AttachUprobe(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t obj = U32(info, 0);
    bool ret = info[2].ToBoolean().Value();
    std::string path = Str(info, 4);
    std::string func = Str(info, 6);
    LIBBPF_OPTS(bpf_uprobe_opts, opts, .retprobe = ret, .func_name = func.empty() ? nullptr : func.c_str());
    g_log.clear();
    bpf_link* l = bpf_program__attach_uprobe_opts(GetProgram(env, obj, Str(info, 1)),
                                                  static_cast<pid_t>(I64(info, 3)), path.c_str(),
                                                  static_cast<size_t>(I64(info, 5)), &opts);
    return NewLink(env, obj, l, -1,
                   std::string("attach ") + (ret ? "uretprobe " : "uprobe ") + path + (func.empty() ? "" : ":" + func));
  }

  // A function for tests to put a uprobe on: the native layer checks itself.
  Napi::Value ProbeTarget(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), datakit_ebpf_probe_target(U32(info, 0)));
  }

  // attachCgroup(obj, prog, cgroupDir): sockops, cgroup_skb, cgroup_sock, ...
  Napi::Value AttachCgroup(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t obj = U32(info, 0);
    std::string path = Str(info, 2);
    int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) ThrowOp(env, "open cgroup " + path, errno);
    g_log.clear();
    bpf_link* l = bpf_program__attach_cgroup(GetProgram(env, obj, Str(info, 1)), fd);
    int err = errno;
    close(fd);  // the link holds its own reference to the cgroup
    errno = err;
    return NewLink(env, obj, l, -1, "attach to cgroup " + path);
  }

  // attachSocketFilter(obj, prog): a packet socket of this network namespace
  // that sees every frame and runs the filter on it.
  Napi::Value AttachSocketFilter(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t obj = U32(info, 0);
    int prog_fd = bpf_program__fd(GetProgram(env, obj, Str(info, 1)));
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(ETH_P_ALL));
    if (fd < 0) ThrowOp(env, "packet socket", errno);
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_BPF, &prog_fd, sizeof(prog_fd)) < 0) {
      int err = errno;
      close(fd);
      ThrowOp(env, "attach socket filter", err);
    }
    return NewLink(env, obj, nullptr, fd, "attach socket filter");
  }

  Napi::Value Detach(const Napi::CallbackInfo& info) {
    auto it = links_.find(U32(info, 0));
    if (it != links_.end()) {
      DestroyLink(it->second);
      links_.erase(it);
    }
    return info.Env().Undefined();
  }

  // ---- maps (by fd) ----

  Napi::Value MapLookup(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto key = Buf(info, 1), value = Buf(info, 2);
    if (bpf_map_lookup_elem(static_cast<int>(U32(info, 0)), key.Data(), value.Data()) == 0)
      return Napi::Boolean::New(env, true);
    if (errno == ENOENT) return Napi::Boolean::New(env, false);
    ThrowOp(env, "map lookup", errno);
  }

  Napi::Value MapUpdate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto key = Buf(info, 1), value = Buf(info, 2);
    if (bpf_map_update_elem(static_cast<int>(U32(info, 0)), key.Data(), value.Data(), U32(info, 3)) != 0)
      ThrowOp(env, "map update", errno);
    return env.Undefined();
  }

  Napi::Value MapDelete(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto key = Buf(info, 1);
    if (bpf_map_delete_elem(static_cast<int>(U32(info, 0)), key.Data()) == 0) return Napi::Boolean::New(env, true);
    if (errno == ENOENT) return Napi::Boolean::New(env, false);
    ThrowOp(env, "map delete", errno);
  }

  // mapBatch(fd, keys, keySize, values, valueSize, deleteToo) -> count
  // Reads (and optionally deletes) entries in as few syscalls as the kernel
  // allows, until the map is exhausted or the buffers are full.
  Napi::Value MapBatch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int fd = static_cast<int>(U32(info, 0));
    auto keys = Buf(info, 1);
    size_t key_size = U32(info, 2);
    auto values = Buf(info, 3);
    size_t value_size = U32(info, 4);
    bool del = info[5].ToBoolean().Value();
    if (!key_size || !value_size) throw Napi::RangeError::New(env, "zero key or value size");
    size_t cap = std::min(keys.Length() / key_size, values.Length() / value_size);
    // The batch cursor is opaque: a bucket index for hash maps, a key for arrays.
    std::vector<uint8_t> in(key_size + 8), out(key_size + 8);
    bool first = true;
    size_t total = 0;
    // With a cursor (byte 0: 0 start, 1 under way, 2 done; then the batch token)
    // a map is read a bufferful at a time and the next call goes on from there.
    uint8_t* cursor = nullptr;
    if (info.Length() > 6 && !info[6].IsUndefined()) {
      auto c = Buf(info, 6);
      if (c.Length() < 1 + in.size()) throw Napi::RangeError::New(env, "cursor too small");
      cursor = c.Data();
      if (cursor[0] == 2) return Napi::Number::New(env, 0);
      first = cursor[0] == 0;
      if (!first) std::memcpy(in.data(), cursor + 1, in.size());
    }
    bool done = false;
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    while (total < cap) {
      uint32_t count = static_cast<uint32_t>(cap - total);
      int err = del ? bpf_map_lookup_and_delete_batch(fd, first ? nullptr : in.data(), out.data(),
                                                      keys.Data() + total * key_size,
                                                      values.Data() + total * value_size, &count, &opts)
                    : bpf_map_lookup_batch(fd, first ? nullptr : in.data(), out.data(),
                                           keys.Data() + total * key_size,
                                           values.Data() + total * value_size, &count, &opts);
      int e = err ? errno : 0;
      total += count;  // valid even on ENOENT: the last partial batch
      if (e == ENOENT) {
        done = true;
        break;
      }
      if (e == ENOSPC && total > 0) break;  // a bucket larger than what is left: caller reads again
      if (e) ThrowOp(env, del ? "map lookup_and_delete_batch" : "map lookup_batch", e);
      std::swap(in, out);
      first = false;
    }
    if (cursor) {
      cursor[0] = done ? 2 : first ? 0 : 1;
      std::memcpy(cursor + 1, in.data(), in.size());
    }
    return Napi::Number::New(env, static_cast<double>(total));
  }

  // mapDeleteBatch(fd, keys, keySize, count) -> entries deleted
  // Deletes `count` keys packed in `keys` with as few syscalls as the kernel
  // allows; a key already gone is skipped, not an error.
  Napi::Value MapDeleteBatch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int fd = static_cast<int>(U32(info, 0));
    auto keys = Buf(info, 1);
    size_t key_size = U32(info, 2);
    size_t n = U32(info, 3);
    if (!key_size || n * key_size > keys.Length()) throw Napi::RangeError::New(env, "keys shorter than count");
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    size_t at = 0, deleted = 0;
    while (at < n) {
      uint32_t count = static_cast<uint32_t>(n - at);
      int err = bpf_map_delete_batch(fd, keys.Data() + at * key_size, &count, &opts);
      int e = err ? errno : 0;
      at += count;
      deleted += count;
      if (!e) continue;
      if (e != ENOENT) ThrowOp(env, "map delete_batch", e);
      at++;  // the key that was gone
    }
    return Napi::Number::New(env, static_cast<double>(deleted));
  }

  Napi::Value NumPossibleCpus(const Napi::CallbackInfo& info) {
    int n = libbpf_num_possible_cpus();
    if (n < 0) ThrowOp(info.Env(), "possible cpus", n);
    return Napi::Number::New(info.Env(), n);
  }

  // kernelBtfFind(name, kind) -> -1 when the running kernel's BTF has no such
  // type; else its member count (a function: its parameters). Hooks are chosen
  // by what the kernel has, and function signatures change between versions.
  Napi::Value KernelBtfFind(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string name = Str(info, 0);
    uint32_t kind = U32(info, 1);
    if (!vmlinux_btf_) {
      vmlinux_btf_ = btf__load_vmlinux_btf();
      int err = libbpf_get_error(vmlinux_btf_);
      if (err) {
        vmlinux_btf_ = nullptr;
        ThrowOp(env, "load kernel BTF", err);
      }
    }
    int id = btf__find_by_name_kind(vmlinux_btf_, name.c_str(), kind);
    if (id < 0) return Napi::Number::New(env, -1);
    const btf_type* t = btf__type_by_id(vmlinux_btf_, id);
    if (btf_is_func(t)) t = btf__type_by_id(vmlinux_btf_, t->type);
    return Napi::Number::New(env, btf_vlen(t));
  }

  // kernelHasHelper(progType, helperId): whether the kernel lets programs of
  // that type call the helper. Loads a two-instruction probe program: far
  // cheaper than having the verifier refuse a whole object for one call.
  Napi::Value KernelHasHelper(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int r = libbpf_probe_bpf_helper(static_cast<bpf_prog_type>(U32(info, 0)), static_cast<bpf_func_id>(U32(info, 1)), nullptr);
    if (r < 0) ThrowOp(env, "probe helper", r);
    return Napi::Boolean::New(env, r == 1);
  }

  Napi::Value LibbpfVersion(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), libbpf_version_string());
  }

  // ---- ring buffers ----

  // ringOpen(mapFd, buffer, onData(bytes)) -> handle. onData is called from the
  // event loop when the kernel wakes us; it must not throw.
  Napi::Value RingOpen(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int fd = static_cast<int>(U32(info, 0));
    auto buf = Buf(info, 1);
    if (!info[2].IsFunction()) throw Napi::TypeError::New(env, "argument 2 must be a function");
    auto ring = std::make_unique<Ring>();
    int err = ring->reader.Open(fd);
    if (err) ThrowOp(env, "mmap ring buffer", err);
    ring->env = env;
    ring->buffer_ref = Napi::Persistent(buf);
    ring->buffer = buf.Data();
    ring->capacity = buf.Length();
    ring->on_data = Napi::Persistent(info[2].As<Napi::Function>());
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    ring->poll = new uv_poll_t;
    if (uv_poll_init(loop, ring->poll, fd) != 0) {
      delete ring->poll;
      ring->poll = nullptr;
      throw Napi::Error::New(env, "uv_poll_init failed on ring buffer");
    }
    ring->poll->data = ring.get();
    uv_poll_start(ring->poll, UV_READABLE, OnRingReadable);
    // Do not keep the process alive just for this handle.
    uv_unref(reinterpret_cast<uv_handle_t*>(ring->poll));
    uint32_t id = next_id_++;
    rings_[id] = std::move(ring);
    return Napi::Number::New(env, id);
  }

  static void OnRingReadable(uv_poll_t* handle, int status, int events) {
    Ring* ring = static_cast<Ring*>(handle->data);
    if (!ring || status < 0) return;
    Napi::Env env(ring->env);
    Napi::HandleScope scope(env);
    // Bounded so a producer faster than us cannot starve the event loop;
    // level-triggered polling brings us back for the rest.
    for (int round = 0; round < 16; round++) {
      size_t n = ring->reader.Drain(ring->buffer, ring->capacity);
      if (!n) break;
      try {
        ring->on_data.Call({Napi::Number::New(env, static_cast<double>(n))});
      } catch (const Napi::Error& e) {
        napi_fatal_exception(env, e.Value());
        return;
      }
      if (!ring->poll) return;  // closed from the callback
    }
  }

  Napi::Value RingDrain(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto it = rings_.find(U32(info, 0));
    if (it == rings_.end()) throw Napi::Error::New(env, "no such ring handle");
    Ring* r = it->second.get();
    return Napi::Number::New(env, static_cast<double>(r->reader.Drain(r->buffer, r->capacity)));
  }

  // ringWatch(handle, on): whether the kernel's wake-ups call onData (drains work either way).
  Napi::Value RingWatch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto it = rings_.find(U32(info, 0));
    if (it == rings_.end()) throw Napi::Error::New(env, "no such ring handle");
    Ring* r = it->second.get();
    if (r->poll) {
      if (info[1].ToBoolean().Value())
        uv_poll_start(r->poll, UV_READABLE, OnRingReadable);
      else
        uv_poll_stop(r->poll);
    }
    return env.Undefined();
  }

  static void StopRing(Ring* r) {
    if (r->poll) {
      uv_poll_stop(r->poll);
      r->poll->data = nullptr;
      uv_close(reinterpret_cast<uv_handle_t*>(r->poll), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
      r->poll = nullptr;
    }
    r->reader.Close();
  }

  Napi::Value RingClose(const Napi::CallbackInfo& info) {
    auto it = rings_.find(U32(info, 0));
    if (it != rings_.end()) {
      StopRing(it->second.get());
      rings_.erase(it);
    }
    return info.Env().Undefined();
  }
};

}  // namespace

NODE_API_ADDON(Addon)
