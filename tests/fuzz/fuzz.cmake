# libFuzzer targets for every parser of network input (tests/fuzz/README.md).
# Included from tests/CMakeLists.txt when IMAGESFS_FUZZ is ON; needs clang (CC=clang).
#
# Each target is built with -fsanitize=fuzzer,address,undefined; the code under test is
# compiled into the target with -fsanitize=fuzzer-no-link so coverage guides the search.
# Each is a ctest test (label fuzz) that runs for IMAGESFS_FUZZ_SECONDS over a fresh copy
# of its committed seed corpus tests/fuzz/corpus/<target>/ (the committed files are never
# modified); crashing inputs are written to <build>/fuzz-artifacts/.
if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "IMAGESFS_FUZZ needs clang: configure with CC=clang")
endif()

set(IMAGESFS_FUZZ_SECONDS 15 CACHE STRING "Seconds each fuzz target runs in ctest")

set(FUZZ_DIR ${CMAKE_CURRENT_LIST_DIR})
set(FUZZ_FLAGS -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
               -fno-omit-frame-pointer -g)
set(FUZZ_LINK -fsanitize=fuzzer,address,undefined)

# The api/ parsers, instrumented (a separate library: imagesfs_api itself is untouched).
file(GLOB FUZZ_API_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/api/*.c)
add_library(imagesfs_api_fuzz STATIC ${FUZZ_API_SOURCES})
target_include_directories(imagesfs_api_fuzz PUBLIC ${CMAKE_SOURCE_DIR}/api)
target_compile_options(imagesfs_api_fuzz PRIVATE ${FUZZ_FLAGS})
target_link_libraries(imagesfs_api_fuzz PUBLIC PkgConfig::CURL PkgConfig::JSONC Threads::Threads)

set(FUZZ_TARGETS)
foreach(t list image keys variants stats envelope text)
  string(TOUPPER ${t} T)
  add_executable(fuzz_api_${t} ${FUZZ_DIR}/fuzz_api.c)
  target_compile_definitions(fuzz_api_${t} PRIVATE FUZZ_API_${T})
  target_compile_options(fuzz_api_${t} PRIVATE ${FUZZ_FLAGS})
  target_link_options(fuzz_api_${t} PRIVATE ${FUZZ_LINK})
  target_link_libraries(fuzz_api_${t} PRIVATE imagesfs_api_fuzz)
  list(APPEND FUZZ_TARGETS fuzz_api_${t})
endforeach()

# The emulator's request parsing: its parser sources linked directly.
foreach(t multipart fields)
  add_executable(fuzz_emu_${t} ${FUZZ_DIR}/fuzz_emu_${t}.c
                               ${CMAKE_SOURCE_DIR}/tests/emulator/emu_multipart.c
                               ${CMAKE_SOURCE_DIR}/tests/emulator/emu_util.c)
  target_include_directories(fuzz_emu_${t} PRIVATE ${CMAKE_SOURCE_DIR}/tests/emulator)
  target_compile_options(fuzz_emu_${t} PRIVATE ${FUZZ_FLAGS})
  target_link_options(fuzz_emu_${t} PRIVATE ${FUZZ_LINK})
  target_link_libraries(fuzz_emu_${t} PRIVATE PkgConfig::JSONC PkgConfig::MHD Threads::Threads)
  list(APPEND FUZZ_TARGETS fuzz_emu_${t})
endforeach()

add_custom_target(fuzz_all DEPENDS ${FUZZ_TARGETS})

foreach(t ${FUZZ_TARGETS})
  set(work ${CMAKE_BINARY_DIR}/fuzz-work/${t})
  set(art ${CMAKE_BINARY_DIR}/fuzz-artifacts)
  add_test(NAME ${t} COMMAND sh -c
    "rm -rf '${work}' && mkdir -p '${work}' '${art}' && cp '${FUZZ_DIR}/corpus/${t}/'* '${work}/' && exec \"$0\" -max_total_time=${IMAGESFS_FUZZ_SECONDS} -timeout=10 -rss_limit_mb=2048 -max_len=16384 -print_final_stats=1 -artifact_prefix='${art}/${t}-' '${work}'"
    $<TARGET_FILE:${t}>)
  set_tests_properties(${t} PROPERTIES LABELS fuzz TIMEOUT 600
    ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
endforeach()
