// CUDA error handling for launchers (.cu files only): turn every failure into a Status.
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "sl/status.h"

#define SL_CUDA_TRY(expr)                                                            \
  do {                                                                               \
    cudaError_t sl_err_ = (expr);                                                    \
    if (sl_err_ != cudaSuccess) {                                                    \
      return ::sl::cuda_error(std::string(#expr) + ": " + cudaGetErrorString(sl_err_)); \
    }                                                                                \
  } while (0)

// after every kernel launch
#define SL_CUDA_CHECK_LAUNCH(what)                                                   \
  do {                                                                               \
    cudaError_t sl_err_ = cudaGetLastError();                                        \
    if (sl_err_ != cudaSuccess) {                                                    \
      return ::sl::cuda_error(std::string(what) + " launch: " + cudaGetErrorString(sl_err_)); \
    }                                                                                \
  } while (0)

namespace sl {

// Sets the device for the scope of a launcher and restores the caller's.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    if (cudaGetDevice(&prev_) != cudaSuccess) prev_ = -1;
    status_ = cudaSetDevice(device);
  }
  ~DeviceGuard() {
    if (prev_ >= 0) cudaSetDevice(prev_);
  }
  cudaError_t status() const { return status_; }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = -1;
  cudaError_t status_ = cudaSuccess;
};

}  // namespace sl

#define SL_CUDA_DEVICE_GUARD(exec)                                                   \
  ::sl::DeviceGuard sl_guard_((exec).device_index);                                  \
  if (sl_guard_.status() != cudaSuccess)                                             \
    return ::sl::cuda_error(std::string("cudaSetDevice: ") + cudaGetErrorString(sl_guard_.status()))
