# fuzz.cmake: the libFuzzer configuration (tests/fuzz/README.md). The top-level
# CMakeLists.txt includes this file instead of its own targets when FLEET_FUZZ=ON:
#
#   cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DFLEET_FUZZ=ON -DFLEET_WERROR=OFF
#   cmake --build build-fuzz
#
# It builds only the fuzz targets and the libraries they test (libfleet and the gateway's
# pure core), every file instrumented for coverage and checked by AddressSanitizer
# (leaks included) and UndefinedBehaviorSanitizer, which aborts at the first report so
# that libFuzzer records the input. The gateway, worker, CLI and tests are not built.

if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "FLEET_FUZZ=ON needs clang (libFuzzer): configure a fresh build "
                      "directory with -DCMAKE_C_COMPILER=clang")
endif()

add_compile_options(-fsanitize=fuzzer-no-link,address,undefined
                    -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g)
add_link_options(-fsanitize=address,undefined)

add_subdirectory(shared)
add_subdirectory(gateway EXCLUDE_FROM_ALL) # only the libraries the targets link are built
add_subdirectory(tests/fuzz)
