#include "ringbuf.h"

#include <bpf/bpf.h>
#include <cerrno>
#include <cstring>
#include <linux/bpf.h>
#include <sys/mman.h>
#include <unistd.h>

namespace {
constexpr uint32_t kBusyBit = 1u << 31;     // record still being written
constexpr uint32_t kDiscardBit = 1u << 30;  // record discarded by the producer
constexpr size_t kHeaderSize = 8;

inline size_t RoundUp8(size_t n) { return (n + 7) & ~size_t(7); }

inline uint64_t LoadAcquire(const void* p) {
  return __atomic_load_n(static_cast<const uint64_t*>(p), __ATOMIC_ACQUIRE);
}
}  // namespace

int RingReader::Open(int map_fd) {
  bpf_map_info info;
  memset(&info, 0, sizeof(info));
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(map_fd, &info, &len) < 0) return -errno;
  if (info.type != BPF_MAP_TYPE_RINGBUF) return -EINVAL;
  page_size_ = sysconf(_SC_PAGESIZE);
  size_ = info.max_entries;
  // The consumer position page is the only writable part.
  consumer_ = mmap(nullptr, page_size_, PROT_READ | PROT_WRITE, MAP_SHARED, map_fd, 0);
  if (consumer_ == MAP_FAILED) {
    consumer_ = nullptr;
    return -errno;
  }
  // Producer page followed by the data area mapped twice, so a record that
  // wraps around the end is contiguous in memory.
  producer_ = mmap(nullptr, page_size_ + 2 * size_, PROT_READ, MAP_SHARED, map_fd, page_size_);
  if (producer_ == MAP_FAILED) {
    int err = -errno;
    producer_ = nullptr;
    Close();
    return err;
  }
  map_fd_ = map_fd;
  return 0;
}

void RingReader::Close() {
  if (consumer_) munmap(consumer_, page_size_);
  if (producer_) munmap(producer_, page_size_ + 2 * size_);
  consumer_ = producer_ = nullptr;
  map_fd_ = -1;
}

size_t RingReader::Drain(uint8_t* out, size_t cap) {
  if (!consumer_) return 0;
  const uint8_t* data = static_cast<const uint8_t*>(producer_) + page_size_;
  const uint64_t mask = size_ - 1;
  uint64_t cons = LoadAcquire(consumer_);
  size_t used = 0;
  for (;;) {
    uint64_t prod = LoadAcquire(producer_);
    if (cons >= prod) break;
    bool stop = false;
    while (cons < prod) {
      const uint8_t* hdr = data + (cons & mask);
      uint32_t len = __atomic_load_n(reinterpret_cast<const uint32_t*>(hdr), __ATOMIC_ACQUIRE);
      if (len & kBusyBit) {
        stop = true;  // the producer is not done with this one: next drain
        break;
      }
      uint32_t rec_len = len & ~(kBusyBit | kDiscardBit);
      if (!(len & kDiscardBit)) {
        size_t need = kHeaderSize + RoundUp8(rec_len);
        if (used + need > cap) {
          stop = true;  // left in the ring for the next drain
          break;
        }
        uint32_t out_hdr[2] = {rec_len, 0};
        memcpy(out + used, out_hdr, kHeaderSize);
        memcpy(out + used + kHeaderSize, hdr + kHeaderSize, rec_len);
        used += need;
      }
      cons += RoundUp8(rec_len + kHeaderSize);
      __atomic_store_n(static_cast<uint64_t*>(consumer_), cons, __ATOMIC_RELEASE);
    }
    if (stop) break;
  }
  return used;
}
