// A consumer for BPF ring buffer maps that copies whole records into a
// caller-owned buffer and stops, without consuming, when the buffer is full.
// libbpf's ring_buffer__consume() drops a record whose callback fails and
// calls back per record; reading the shared pages directly avoids both.
#pragma once
#include <cstddef>
#include <cstdint>

class RingReader {
 public:
  // Maps the ring of `map_fd`; returns 0 or a negative errno.
  int Open(int map_fd);
  void Close();
  // Copies pending records into out[0..cap) as [u32 len][u32 pad][data, padded
  // to 8 bytes]. Returns the bytes written; 0 when the ring is empty.
  size_t Drain(uint8_t* out, size_t cap);
  int fd() const { return map_fd_; }
  ~RingReader() { Close(); }

 private:
  int map_fd_ = -1;
  size_t page_size_ = 0;
  size_t size_ = 0;  // data area size (power of two)
  void* consumer_ = nullptr;
  void* producer_ = nullptr;
};
