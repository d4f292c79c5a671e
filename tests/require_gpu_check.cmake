# MARBM_REQUIRE_GPU=1 must turn "no usable device" into failures. Runs one
# device test of the GPU test binary twice: plainly, and with the variable set.
# Without a device the plain run skips and the required run must fail (naming
# MARBM_REQUIRE_GPU); with a device both must pass.
#   cmake -DGPU_TESTS=<marbm_gpu_tests> -P require_gpu_check.cmake
set(filter "--gtest_filter=CudaEngineVsCpu.GibbsChainsDrawTheSameNumbers")
execute_process(COMMAND ${CMAKE_COMMAND} -E env --unset=MARBM_REQUIRE_GPU ${GPU_TESTS} ${filter}
  RESULT_VARIABLE plain_status OUTPUT_VARIABLE plain_output ERROR_VARIABLE plain_output)
execute_process(COMMAND ${CMAKE_COMMAND} -E env MARBM_REQUIRE_GPU=1 ${GPU_TESTS} ${filter}
  RESULT_VARIABLE required_status OUTPUT_VARIABLE required_output ERROR_VARIABLE required_output)
if(NOT plain_status EQUAL 0)
  message(FATAL_ERROR "the plain run failed:\n${plain_output}")
endif()
if(plain_output MATCHES "\\[  SKIPPED \\] 1 test")
  # No device: the required run must fail and say why.
  if(required_status EQUAL 0)
    message(FATAL_ERROR "MARBM_REQUIRE_GPU=1 without a device still passed:\n${required_output}")
  endif()
  if(NOT required_output MATCHES "MARBM_REQUIRE_GPU is set but no CUDA device is usable")
    message(FATAL_ERROR "the required run failed without naming the reason:\n${required_output}")
  endif()
  message(STATUS "no device: skipped plainly, failed under MARBM_REQUIRE_GPU=1")
elseif(plain_output MATCHES "\\[  PASSED  \\] 1 test")
  if(NOT required_status EQUAL 0)
    message(FATAL_ERROR "with a device the required run failed:\n${required_output}")
  endif()
  message(STATUS "device present: passed both ways")
else()
  message(FATAL_ERROR "the filter selected no test:\n${plain_output}")
endif()
