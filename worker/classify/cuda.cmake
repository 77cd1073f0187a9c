# The classify model's cuDNN backend, included by backends.cmake when fleet was configured
# with the CUDA toolkit and cuDNN (FLEET_HAVE_CUDA, FLEET_HAVE_CUDNN), after
# fleet_classify_cpu (the CPU forward pass it checks itself against at load):
#   fleet_classify_cuda   cnn_cuda.c (host code in C: cuDNN and cuBLAS) and
#                         cnn_cuda_kernels.cu (the pixels' bytes to floats); for the
#                         module, tests/gpu/ (fleet-classify-check) and the benches;
#   fleet-classify-cuda   the module fleet-classify-cuda.so in bin/ (installed to
#                         lib/fleet), made by fleet_backend_module as the embed model's
#                         fleet-embed-cuda.so is: only cnn_module_v1 is exported, the copies
#                         of the classify and embed code inside stay private to it.
add_library(fleet_classify_cuda STATIC
  ${CMAKE_CURRENT_LIST_DIR}/cnn_cuda.c
  ${CMAKE_CURRENT_LIST_DIR}/cnn_cuda_kernels.cu)
set_target_properties(fleet_classify_cuda PROPERTIES POSITION_INDEPENDENT_CODE ON)
target_compile_definitions(fleet_classify_cuda PUBLIC CLASSIFY_HAVE_CUDA)
set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/cnn_cuda_kernels.cu
                            PROPERTIES COMPILE_OPTIONS "-O3;--Werror=all-warnings")
# cuDNN's headers declare the convolution, activation and pooling calls deprecated (warned
# about only with CUDNN_WARN_DEPRECATED); SYSTEM keeps any of their warnings out of -Werror.
target_include_directories(fleet_classify_cuda SYSTEM PRIVATE ${CUDNN_INCLUDE_DIR})
target_link_libraries(fleet_classify_cuda PUBLIC fleet_classify_cpu CUDA::cudart CUDA::cublas
                      ${CUDNN_LIBRARY})
fleet_backend_module(fleet-classify-cuda ${CMAKE_CURRENT_LIST_DIR}/cnn_cuda_module.c
                    fleet_classify_cuda)
