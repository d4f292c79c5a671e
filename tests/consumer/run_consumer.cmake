# Installs a marbm build tree into WORK_DIR/prefix, configures and builds the
# consumer project in CONSUMER_SOURCE_DIR against it and runs it. Any failing
# step stops the script with a message (the test fails).
#
#   cmake -DMARBM_BUILD_DIR=... -DCONSUMER_SOURCE_DIR=... -DWORK_DIR=...
#         [-DCMAKE_GENERATOR=...] -P run_consumer.cmake
foreach(variable MARBM_BUILD_DIR CONSUMER_SOURCE_DIR WORK_DIR)
  if(NOT DEFINED ${variable} OR "${${variable}}" STREQUAL "")
    message(FATAL_ERROR "run_consumer.cmake: ${variable} is not set")
  endif()
endforeach()

set(prefix ${WORK_DIR}/prefix)
set(build ${WORK_DIR}/build)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

function(run_step name)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE status OUTPUT_VARIABLE output ERROR_VARIABLE output)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "consumer: ${name} failed (${status}):\n${output}")
  endif()
  message(STATUS "consumer: ${name} ok")
  set(step_output "${output}" PARENT_SCOPE)
endfunction()

# The same compilers and flags as the marbm build, so that the consumer links against
# the library it was built with; CUDAToolkit_ROOT lets the package find the
# toolkit again when the library has the CUDA engine.
set(configure_arguments)
if(EXISTS ${MARBM_BUILD_DIR}/CMakeCache.txt)
  file(STRINGS ${MARBM_BUILD_DIR}/CMakeCache.txt cache_lines REGEX "^(CMAKE_CXX_COMPILER|CMAKE_CUDA_COMPILER|CMAKE_BUILD_TYPE|CMAKE_CXX_FLAGS):")
  foreach(line IN LISTS cache_lines)
    string(REGEX MATCH "^([A-Z_]+):[A-Z]+=(.*)$" _ "${line}")
    set(key ${CMAKE_MATCH_1})
    set(value "${CMAKE_MATCH_2}")
    if(key STREQUAL "CMAKE_CXX_COMPILER" AND value)
      list(APPEND configure_arguments -DCMAKE_CXX_COMPILER=${value})
    elseif(key STREQUAL "CMAKE_CXX_FLAGS" AND value)
      # A sanitizer build's library needs its runtime in the consumer too.
      list(APPEND configure_arguments "-DCMAKE_CXX_FLAGS=${value}")
    elseif(key STREQUAL "CMAKE_BUILD_TYPE" AND value)
      list(APPEND configure_arguments -DCMAKE_BUILD_TYPE=${value})
      set(build_type ${value})
    elseif(key STREQUAL "CMAKE_CUDA_COMPILER" AND value AND NOT value MATCHES "NOTFOUND")
      get_filename_component(cuda_bin ${value} DIRECTORY)
      get_filename_component(cuda_root ${cuda_bin} DIRECTORY)
      list(APPEND configure_arguments -DCUDAToolkit_ROOT=${cuda_root})
    endif()
  endforeach()
endif()
if(NOT build_type)
  set(build_type Release)
endif()
set(generator_arguments)
if(DEFINED CMAKE_GENERATOR AND NOT CMAKE_GENERATOR STREQUAL "")
  set(generator_arguments -G ${CMAKE_GENERATOR})
endif()

run_step("install into ${prefix}" ${CMAKE_COMMAND} --install ${MARBM_BUILD_DIR} --prefix ${prefix} --config ${build_type})
run_step("configure" ${CMAKE_COMMAND} -S ${CONSUMER_SOURCE_DIR} -B ${build} ${generator_arguments}
  -DCMAKE_PREFIX_PATH=${prefix} ${configure_arguments})
run_step("build" ${CMAKE_COMMAND} --build ${build} --config ${build_type})

set(app ${build}/app)
if(NOT EXISTS ${app} AND EXISTS ${build}/${build_type}/app)
  set(app ${build}/${build_type}/app)
endif()
run_step("run" ${app})
message(STATUS "${step_output}")

# The installed command-line tool finds the installed library (its RPATH).
run_step("installed marbm info" ${prefix}/bin/marbm info --json)
if(NOT step_output MATCHES "\"cuda_compiled\"")
  message(FATAL_ERROR "consumer: installed marbm info printed no cuda_compiled field:\n${step_output}")
endif()
message(STATUS "${step_output}")
