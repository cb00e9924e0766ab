// CUDA Walsh-Hadamard transform, bandwidth-bound design.
//  pass 1 (fwht_local_kernel): each chunk of L = min(n, fwht_local_len) elements of a row
//    is read once (16-byte loads when the row is contiguous and aligned), 8 elements per
//    thread: 3 stages in registers, up to 5 stages across the warp with shuffles, the rest
//    in shared memory; written once (16-byte stores).
//  pass 2 (fwht_high_kernel, only when n > L): the log2(n/L) stages across chunks, in
//    place on the output: each block holds G columns x (n/L) chunk indices in shared memory.
// The CPU twin in csrc/cpu/fwht.cpp uses the same chunk decomposition.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "common.cuh"
#include "sl/cuda_check.h"
#include "sl/dtype.h"
#include "sl/fwht.h"

namespace sl {
namespace {

constexpr int kEpt = 8;           // elements per thread in pass 1
constexpr int kHighMaxChunks = 256;  // n / L limit of pass 2

struct LocalParams {
  const void* in;
  void* out;
  std::int64_t n2, s1, s2, se;  // input row addressing (RowsView)
  std::int64_t n;               // row length
  std::int64_t chunks_per_row;  // n / L
  std::int64_t total_chunks;    // rows * chunks_per_row
  int L;                        // local chunk length
  int ept;                      // elements per thread: min(L, 8)
  int tpc;                      // threads per chunk: L / ept
  bool vec_in, vec_out;
};

template <typename T>
__global__ void fwht_local_kernel(LocalParams p, typename dacc<T>::type scale) {
  using A = typename dacc<T>::type;
  constexpr int kSmem = (sizeof(A) == 8 ? 4096 : 8192);
  __shared__ A smem[kSmem];

  const int tpc = p.tpc, ept = p.ept, L = p.L;
  const int cb = threadIdx.x / tpc;   // chunk within the block
  const int t = threadIdx.x % tpc;    // thread within the chunk
  const std::int64_t chunk = static_cast<std::int64_t>(blockIdx.x) * (blockDim.x / tpc) + cb;
  const bool valid = chunk < p.total_chunks;
  const std::int64_t row = valid ? chunk / p.chunks_per_row : 0;
  const std::int64_t c = valid ? chunk % p.chunks_per_row : 0;
  const std::int64_t first = c * L + static_cast<std::int64_t>(t) * ept;  // element index in row

  A v[kEpt];
#pragma unroll
  for (int k = 0; k < kEpt; ++k) v[k] = A(0);
  if (valid) {
    const T* x = static_cast<const T*>(p.in) + (row / p.n2) * p.s1 + (row % p.n2) * p.s2;
    if (p.vec_in) {
      load_vec<T, kEpt>(x + first, v);
    } else {
#pragma unroll
      for (int k = 0; k < kEpt; ++k)
        if (k < ept) v[k] = to_acc(x[(first + k) * p.se]);
    }
  }

  // stages h < ept: in registers
#pragma unroll
  for (int h = 1; h < kEpt; h <<= 1) {
    if (h < ept) {
#pragma unroll
      for (int k = 0; k < kEpt; ++k) {
        if ((k & h) == 0) {
          const A a = v[k], b = v[k + h];
          v[k] = a + b;
          v[k + h] = a - b;
        }
      }
    }
  }
  // stages h = m * ept for m < min(tpc, 32): across lanes (chunk groups are aligned
  // power-of-two lane ranges, so lane ^ m stays inside the chunk)
  for (int m = 1; m < tpc && m < 32; m <<= 1) {
    const bool lower = (t & m) == 0;
#pragma unroll
    for (int k = 0; k < kEpt; ++k) {
      const A other = __shfl_xor_sync(0xffffffffu, v[k], m);
      v[k] = lower ? v[k] + other : other - v[k];
    }
  }
  // stages h >= 32 * ept: in shared memory (tpc is uniform across the block)
  if (tpc > 32) {
    A* s = smem + cb * L;
#pragma unroll
    for (int k = 0; k < kEpt; ++k) s[t * kEpt + k] = v[k];
    __syncthreads();
    for (int h = 32 * kEpt; h < L; h <<= 1) {
#pragma unroll
      for (int j = 0; j < kEpt / 2; ++j) {
        const int q = t + j * tpc;  // pair index in [0, L/2)
        const int i = (q / h) * 2 * h + (q % h);
        const A a = s[i], b = s[i + h];
        s[i] = a + b;
        s[i + h] = a - b;
      }
      __syncthreads();
    }
#pragma unroll
    for (int k = 0; k < kEpt; ++k) v[k] = s[t * kEpt + k];
  }

  if (valid) {
#pragma unroll
    for (int k = 0; k < kEpt; ++k) v[k] *= scale;
    T* y = static_cast<T*>(p.out) + row * p.n + first;
    if (p.vec_out) {
      store_vec<T, kEpt>(y, v);
    } else {
#pragma unroll
      for (int k = 0; k < kEpt; ++k)
        if (k < ept) y[k] = from_acc<T>(v[k]);
    }
  }
}

// stages across chunks: element (hi, lo) of a row sits at hi * L + lo; a block owns G
// consecutive lo and every hi < H = n / L
template <typename T>
__global__ void fwht_high_kernel(T* out, std::int64_t n, int L, int H, typename dacc<T>::type scale) {
  using A = typename dacc<T>::type;
  constexpr int G = (sizeof(A) == 8 ? 16 : 32);
  __shared__ A buf[G * kHighMaxChunks];
  const int groups_per_row = L / G;
  const std::int64_t row = blockIdx.x / groups_per_row;
  const int lo0 = (blockIdx.x % groups_per_row) * G;
  T* y = out + row * n + lo0;
  for (int idx = threadIdx.x; idx < G * H; idx += blockDim.x) {
    const int g = idx % G, hi = idx / G;
    buf[idx] = to_acc(y[static_cast<std::int64_t>(hi) * L + g]);
  }
  __syncthreads();
  for (int h = 1; h < H; h <<= 1) {
    for (int q = threadIdx.x; q < G * H / 2; q += blockDim.x) {
      const int g = q % G, pr = q / G;
      const int i = (pr / h) * 2 * h + (pr % h);
      const A a = buf[i * G + g], b = buf[(i + h) * G + g];
      buf[i * G + g] = a + b;
      buf[(i + h) * G + g] = a - b;
    }
    __syncthreads();
  }
  for (int idx = threadIdx.x; idx < G * H; idx += blockDim.x) {
    const int g = idx % G, hi = idx / G;
    y[static_cast<std::int64_t>(hi) * L + g] = from_acc<T>(buf[idx] * scale);
  }
}

template <typename T>
Status launch_fwht(const RowsView& in, const RowsView& out, double scale, int local_len,
                   cudaStream_t stream) {
  using A = typename dacc<T>::type;
  const std::int64_t n = in.len;
  const std::int64_t rows = in.rows();
  const int L = static_cast<int>(n < local_len ? n : local_len);
  const int H = static_cast<int>(n / L);
  LocalParams p;
  p.in = in.data;
  p.out = out.data;
  p.n2 = in.n2;
  p.s1 = in.s1;
  p.s2 = in.s2;
  p.se = in.s_elem;
  p.n = n;
  p.L = L;
  p.ept = L < kEpt ? L : kEpt;
  p.tpc = L / p.ept;
  p.chunks_per_row = H;
  p.total_chunks = rows * H;
  const bool full_vec = p.ept == kEpt;
  p.vec_in = full_vec && in.s_elem == 1 && aligned16(in.data) &&
             ((in.s1 * sizeof(T)) % 16 == 0 || in.n1 == 1) && ((in.s2 * sizeof(T)) % 16 == 0 || in.n2 == 1);
  p.vec_out = full_vec && aligned16(out.data);
  const int threads = p.tpc >= 256 ? p.tpc : 256;
  const std::int64_t chunks_per_block = threads / p.tpc;
  const std::int64_t blocks = (p.total_chunks + chunks_per_block - 1) / chunks_per_block;
  if (blocks > 0x7fffffffLL) return invalid_argument("fwht: too many rows for one CUDA launch");
  const A local_scale = static_cast<A>(H == 1 ? scale : 1.0);
  fwht_local_kernel<T><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(p, local_scale);
  SL_CUDA_CHECK_LAUNCH("fwht_local_kernel");
  if (H > 1) {
    constexpr int G = (sizeof(A) == 8 ? 16 : 32);
    const std::int64_t hblocks = rows * (L / G);
    if (hblocks > 0x7fffffffLL) return invalid_argument("fwht: too many rows for one CUDA launch");
    fwht_high_kernel<T><<<static_cast<unsigned>(hblocks), 256, 0, stream>>>(
        static_cast<T*>(out.data), n, L, H, static_cast<A>(scale));
    SL_CUDA_CHECK_LAUNCH("fwht_high_kernel");
  }
  return Status::ok();
}

}  // namespace

Status fwht_cuda(int dtype, const RowsView& in, const RowsView& out, double scale, const Exec& exec) {
  SL_REQUIRE(in.len >= 1 && (in.len & (in.len - 1)) == 0,
             "fwht: length must be a power of two, got " + std::to_string(in.len));
  SL_REQUIRE(out.len == in.len && out.rows() == in.rows() && out.s_elem == 1,
             "fwht: output view must be contiguous rows matching the input");
  SL_REQUIRE(in.len <= fwht_cuda_max_len(dtype),
             "fwht: the CUDA kernel takes n <= " + std::to_string(fwht_cuda_max_len(dtype)) +
                 " per call, got " + std::to_string(in.len));
  if (in.rows() == 0) return Status::ok();
  SL_REQUIRE(in.data != nullptr && out.data != nullptr, "fwht: null data pointer");
  SL_CUDA_DEVICE_GUARD(exec);
  const int local = static_cast<int>(fwht_local_len(dtype));
  const cudaStream_t stream = as_stream(exec.stream);
  return dispatch_float<DeviceTypes>(dtype, "fwht", [&](auto tag) {
    using T = decltype(tag);
    return launch_fwht<T>(in, out, scale, local, stream);
  });
}

}  // namespace sl
