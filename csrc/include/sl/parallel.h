// OpenMP helpers (OpenMP <= 5.0 symbols only: torch's bundled libgomp lacks 5.1).
#pragma once
#ifdef SL_WITH_OPENMP
#include <omp.h>
#endif

namespace sl {

inline int max_threads() {
#ifdef SL_WITH_OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// threads in the current team (1 outside a parallel region): a region may get fewer than it
// asked for (OMP_DYNAMIC, nesting), so work split by thread uses this
inline int team_size() {
#ifdef SL_WITH_OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

inline int thread_id() {
#ifdef SL_WITH_OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

}  // namespace sl
