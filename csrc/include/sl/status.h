// Status: what every native entry returns. Native code never throws across the
// binding boundary, never aborts, exits or prints: it reports.
#pragma once
#include <string>
#include <utility>

namespace sl {

enum class Code : int { Ok = 0, InvalidArgument = 1, CudaError = 2, NotSupported = 3 };

struct Status {
  Code code = Code::Ok;
  std::string message;

  static Status ok() { return {}; }
  bool is_ok() const { return code == Code::Ok; }
};

inline Status invalid_argument(std::string msg) { return {Code::InvalidArgument, std::move(msg)}; }
inline Status not_supported(std::string msg) { return {Code::NotSupported, std::move(msg)}; }
inline Status cuda_error(std::string msg) { return {Code::CudaError, std::move(msg)}; }

// Early-return helper in the style of randlapack_require: the message says what was
// expected and what came.
#define SL_REQUIRE(cond, msg)                          \
  do {                                                 \
    if (!(cond)) return ::sl::invalid_argument(msg);   \
  } while (0)

#define SL_RETURN_IF_ERROR(expr)                       \
  do {                                                 \
    ::sl::Status sl_status_ = (expr);                  \
    if (!sl_status_.is_ok()) return sl_status_;        \
  } while (0)

}  // namespace sl
