# `mpiexec -n R marbm train` (data-parallel) writes the same parameters for
# R = 1, 2 and 3, and so does a plain `marbm train` without mpiexec: the
# tensor bytes of the safetensors files are compared (the metadata differs:
# it names the ranks and the time). Run by ctest:
# cmake -DCLI=... -DMPIEXEC=... -DWORK=... -P train_cli_check.cmake
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})

# The tensor data of a safetensors file: what follows the 8-byte
# little-endian header length and the header.
function(tensor_bytes path out)
  file(READ ${path} length_hex LIMIT 8 HEX)
  set(length 0)
  foreach(index RANGE 7 0 -1)
    math(EXPR at "${index} * 2")
    string(SUBSTRING "${length_hex}" ${at} 2 byte)
    math(EXPR length "${length} * 256 + 0x${byte}")
  endforeach()
  math(EXPR offset "8 + ${length}")
  file(READ ${path} data OFFSET ${offset} HEX)
  set(${out} "${data}" PARENT_SCOPE)
endfunction()

# cd-wide: a batch of two 64-row blocks (126 rows), shared unevenly.
foreach(method cd pcd mode cd-wide)
  set(arguments train --data bars-and-stripes:4 --hidden 40 --method ${method} --batch 30 --iters 200 --seed 3
    --lr 0.05 --backend cpu --threads 1)
  if(method STREQUAL "cd-wide")
    set(arguments train --data bars-and-stripes:6 --hidden 30 --method cd --batch 126 --iters 40 --seed 5
      --lr 0.05 --momentum 0.5 --backend cpu --threads 1)
  elseif(method STREQUAL "pcd")
    list(APPEND arguments --chains 100)
  elseif(method STREQUAL "mode")
    list(APPEND arguments --p-max 0.5 --alpha 10 --beta 0)
  endif()
  foreach(ranks 1 2 3)
    execute_process(COMMAND ${MPIEXEC} -n ${ranks} --oversubscribe ${CLI} ${arguments} --json
        --out ${WORK}/${method}-${ranks}.safetensors
      RESULT_VARIABLE status OUTPUT_VARIABLE output ERROR_VARIABLE error)
    if(NOT status EQUAL 0)
      message(FATAL_ERROR "mpiexec -n ${ranks} marbm train --method ${method} failed: ${status}\n${output}\n${error}")
    endif()
    # One report, from rank 0.
    string(REGEX MATCHALL "\"out\"" reports "${output}")
    list(LENGTH reports report_count)
    if(NOT report_count EQUAL 1)
      message(FATAL_ERROR "expected one JSON report, got ${report_count}:\n${output}")
    endif()
    tensor_bytes(${WORK}/${method}-${ranks}.safetensors tensors_${ranks})
  endforeach()
  # The same run without mpiexec.
  execute_process(COMMAND ${CLI} ${arguments} --json --out ${WORK}/${method}-plain.safetensors
    RESULT_VARIABLE status OUTPUT_VARIABLE output ERROR_VARIABLE error)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "marbm train --method ${method} (no mpiexec) failed: ${status}\n${output}\n${error}")
  endif()
  tensor_bytes(${WORK}/${method}-plain.safetensors tensors_plain)
  string(LENGTH "${tensors_1}" size)
  if(size LESS 1000)
    message(FATAL_ERROR "${method}: implausibly small tensor data (${size} hex digits)")
  endif()
  foreach(ranks 2 3 plain)
    if(NOT tensors_${ranks} STREQUAL tensors_1)
      message(FATAL_ERROR "${method}: the parameters of the run on ${ranks} ranks (plain: without mpiexec) differ from one rank's")
    endif()
  endforeach()
  message(STATUS "${method}: the same parameters on 1, 2 and 3 ranks and without mpiexec")
endforeach()

# A rank that fails ends the run with its error line and a nonzero status
# (here every rank refuses the cuda backend: without NCCL or without a GPU
# per rank there is no data-parallel training on GPUs).
execute_process(COMMAND ${MPIEXEC} -n 2 --oversubscribe ${CLI} train --data bars-and-stripes:4 --hidden 4
    --iters 10 --backend cuda --out ${WORK}/refused.safetensors
  RESULT_VARIABLE status OUTPUT_VARIABLE output ERROR_VARIABLE error)
if(status EQUAL 0 OR NOT error MATCHES "marbm: error: .*(NCCL|CUDA|GPU)")
  message(FATAL_ERROR "mpiexec marbm train --backend cuda: expected an error line and a nonzero status, got ${status}:\n${error}")
endif()
if(EXISTS ${WORK}/refused.safetensors)
  message(FATAL_ERROR "a refused run wrote its output")
endif()
