// Transposed copy of a batch of row-major matrices: out (batch, cols, rows) = the
// transpose of in (batch, rows, cols), both contiguous. The bits are moved, nothing is
// computed: elem_size 2, 4 or 8 bytes covers every dtype of that size. in and out must
// not overlap.
#pragma once
#include <cstdint>
#include <string>

#include "sl/exec.h"
#include "sl/status.h"

namespace sl {

// The argument checks both backends share; *empty is set when there is nothing to move.
inline Status transpose_copy_check(const void* in, const void* out, std::int64_t batch, std::int64_t rows,
                                   std::int64_t cols, int elem_size, bool* empty) {
  SL_REQUIRE(batch >= 0 && rows >= 0 && cols >= 0, "transpose_copy: negative size");
  SL_REQUIRE(elem_size == 2 || elem_size == 4 || elem_size == 8,
             "transpose_copy: elem_size must be 2, 4 or 8, got " + std::to_string(elem_size));
  *empty = batch == 0 || rows == 0 || cols == 0;
  if (*empty) return Status::ok();
  SL_REQUIRE(in && out, "transpose_copy: null pointer");
  SL_REQUIRE(in != out, "transpose_copy: out must not alias in");
  return Status::ok();
}

Status transpose_copy_cpu(const void* in, void* out, std::int64_t batch, std::int64_t rows, std::int64_t cols,
                          int elem_size);
Status transpose_copy_cuda(const void* in, void* out, std::int64_t batch, std::int64_t rows, std::int64_t cols,
                           int elem_size, const Exec& exec);

}  // namespace sl
