// One simulated-bifurcation step of one spin (SPEC.md section 4), the one
// definition both backends run: the CPU solver (host/mode_solvers.cpp) and
// the device kernels (cuda/mode_sb.cu).
#pragma once

#if defined(__CUDACC__)
#define MARBM_HOST_DEVICE __host__ __device__
#else
#define MARBM_HOST_DEVICE
#endif

namespace marbm::detail {

/// Symplectic Euler with perfectly inelastic walls:
/// y' = gain y + dt (-detuning x + c0 field), x' = x + dt a0 y', and at
/// |x'| > 1: x' = sign(x'), y' = 0. `gain` is 1 for the plain dynamics and
/// slightly above 1 for heated ballistic replicas. On the device every
/// operation is rounded on its own, as on the host (the host build does not
/// contract to FMA; nvcc would), so both give the same floats.
MARBM_HOST_DEVICE inline void sb_spin_step(float& x, float& y, float field, float dt, float detuning, float c0,
                                           float a0, float gain) {
#if defined(__CUDA_ARCH__)
  const float force = __fadd_rn(__fmul_rn(-detuning, x), __fmul_rn(c0, field));
  float yk = __fadd_rn(__fmul_rn(gain, y), __fmul_rn(dt, force));
  float xk = __fadd_rn(x, __fmul_rn(__fmul_rn(dt, a0), yk));
#else
  float yk = gain * y + dt * (-detuning * x + c0 * field);
  float xk = x + dt * a0 * yk;
#endif
  if (xk > 1.0f) {
    xk = 1.0f;
    yk = 0.0f;
  } else if (xk < -1.0f) {
    xk = -1.0f;
    yk = 0.0f;
  }
  x = xk;
  y = yk;
}

}  // namespace marbm::detail
