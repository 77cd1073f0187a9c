# The classify model's network (cnn.h) and its backends, included by this directory's
# CMakeLists.txt:
#   fleet_classify_core  the weights reader (cnn_weights.c) and the backends' modules
#                        (cnn_backend.c, through worker/embed/module_file.c): what
#                        fleet-worker links (no OpenBLAS, no CUDA);
#   fleet_classify_cpu   the CPU forward pass (cnn_cpu.c): for the CPU module,
#                        the CUDA backend's self-check, the tests and fleet-classify-bench;
#   fleet-classify-cpu   the module fleet-classify-cpu.so, written to bin/;
#   cuda.cmake           with the CUDA toolkit and cuDNN: the module fleet-classify-cuda.so.
# The weights (models/classify/model.safetensors) are copied to share/fleet/models/classify/
# in the build tree and installed there, where the model looks for them beside fleet-worker
# (../share/fleet/ from its bin/).
add_library(fleet_classify_core STATIC cnn_backend.c cnn_weights.c)
target_include_directories(fleet_classify_core PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(fleet_classify_core PUBLIC fleet_embed_core)
set_target_properties(fleet_classify_core PROPERTIES POSITION_INDEPENDENT_CODE ON)

set(FLEET_CLASSIFY_WEIGHTS ${PROJECT_SOURCE_DIR}/models/classify/model.safetensors)
configure_file(${FLEET_CLASSIFY_WEIGHTS}
               ${CMAKE_BINARY_DIR}/share/fleet/models/classify/model.safetensors COPYONLY)
install(FILES ${FLEET_CLASSIFY_WEIGHTS} DESTINATION share/fleet/models/classify)

add_library(fleet_classify_cpu STATIC cnn_cpu.c)
target_link_libraries(fleet_classify_cpu PUBLIC fleet_classify_core)
set_target_properties(fleet_classify_cpu PROPERTIES POSITION_INDEPENDENT_CODE ON)
# fleet_backend_module (worker/embed/CMakeLists.txt) makes every backend module the same way.
fleet_backend_module(fleet-classify-cpu cnn_cpu_module.c fleet_classify_cpu)
if(FLEET_HAVE_CUDA AND FLEET_HAVE_CUDNN AND EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/cuda.cmake)
  include(${CMAKE_CURRENT_SOURCE_DIR}/cuda.cmake)
endif()
# Building the worker builds these modules too, so bin/ holds them (the worker looks for
# them next to itself). Here, not in worker/: this directory is added after it.
if(TARGET fleet-worker)
  foreach(m fleet-classify-cpu fleet-classify-cuda)
    if(TARGET ${m})
      add_dependencies(fleet-worker ${m})
    endif()
  endforeach()
endif()
