// POD views over raw memory. Strides are in elements (torch's convention).
#pragma once
#include <cstdint>

namespace sl {

// A batch of vectors: rows indexed by (i1, i2) in [0, n1) x [0, n2), each row holds
// `len` elements spaced `s_elem` apart. Covers any dim of any tensor whose batch dims
// coalesce into two (Python coalesces, or copies when they do not).
struct RowsView {
  void* data = nullptr;
  std::int64_t n1 = 1, n2 = 1, len = 0;
  std::int64_t s1 = 0, s2 = 0, s_elem = 1;

  std::int64_t rows() const { return n1 * n2; }
  std::int64_t row_offset(std::int64_t r) const { return (r / n2) * s1 + (r % n2) * s2; }
};

}  // namespace sl
