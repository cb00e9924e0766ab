#pragma once
namespace sl {
// defined in csrc/cuda/runtime.cu (CUDA builds only)
int cuda_runtime_version();
int cuda_driver_version();
int cuda_device_count();
}  // namespace sl
