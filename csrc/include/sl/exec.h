// Where a native call runs: CPU, or a CUDA device with the stream Python read from
// torch.cuda.current_stream(). Plain data: no CUDA header needed to hold it.
#pragma once
#include <cstdint>

namespace sl {

enum class DeviceType : int { CPU = 0, CUDA = 1 };

struct Exec {
  DeviceType device = DeviceType::CPU;
  int device_index = -1;
  std::uintptr_t stream = 0;  // cudaStream_t as an integer (0 = legacy default, never used by Python)
  bool is_cuda() const { return device == DeviceType::CUDA; }
};

}  // namespace sl
