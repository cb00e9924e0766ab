// Shared device helpers: storage <-> accumulation conversions and 16-byte vector access.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "sl/dtype.h"

namespace sl {

// the storage types of the half formats on the device, for dispatch_float<DeviceTypes>
struct DeviceTypes {
  using f16 = __half;
  using bf16 = __nv_bfloat16;
};

template <typename T> struct dacc { using type = T; };
template <> struct dacc<__half> { using type = float; };
template <> struct dacc<__nv_bfloat16> { using type = float; };

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_acc(float v);
template <> __device__ __forceinline__ float from_acc<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <typename T> __device__ __forceinline__ T from_acc(double v) { return static_cast<T>(v); }

// N contiguous elements through 16-byte transactions; p must be 16-byte aligned and
// N * sizeof(T) a multiple of 16.
template <typename T, int N, typename A>
__device__ __forceinline__ void load_vec(const T* p, A* v) {
  static_assert((N * sizeof(T)) % 16 == 0, "load_vec needs whole 16-byte words");
  constexpr int W = N * sizeof(T) / 16;
  uint4 raw[W];
#pragma unroll
  for (int i = 0; i < W; ++i) raw[i] = reinterpret_cast<const uint4*>(p)[i];
  const T* e = reinterpret_cast<const T*>(raw);
#pragma unroll
  for (int k = 0; k < N; ++k) v[k] = to_acc(e[k]);
}

template <typename T, int N, typename A>
__device__ __forceinline__ void store_vec(T* p, const A* v) {
  static_assert((N * sizeof(T)) % 16 == 0, "store_vec needs whole 16-byte words");
  constexpr int W = N * sizeof(T) / 16;
  uint4 raw[W];
  T* e = reinterpret_cast<T*>(raw);
#pragma unroll
  for (int k = 0; k < N; ++k) e[k] = from_acc<T>(v[k]);
#pragma unroll
  for (int i = 0; i < W; ++i) reinterpret_cast<uint4*>(p)[i] = raw[i];
}

inline bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

inline cudaStream_t as_stream(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

// Reductions (krylov.cu, lanczos.cu), in their own namespace so that files with local
// variants (small_dense.cu, spm.cu) keep theirs.
namespace dev {

// sum over the 32 lanes of a warp; every lane gets it
template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// block-wide sum of v in a fixed order (for a fixed block size); every thread gets the same
// result. red: >= 32 slots of shared memory.
template <typename T>
__device__ __forceinline__ T block_sum(T v, T* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // red may still be read by a previous reduction
  if (lane == 0) red[warp] = v;
  __syncthreads();
  T t = T(0);
  for (int w = 0; w < nw; ++w) t += red[w];
  return t;
}

}  // namespace dev

}  // namespace sl
