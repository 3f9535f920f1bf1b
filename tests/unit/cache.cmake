# Unit tests of cache/ (on-disk LRU blob cache). Included from tests/CMakeLists.txt.
# One program, test_cache (ctest: unit_cache; scripts/test also runs it under TSan):
# test_cache.c (helpers, "core" case, main), test_cache_disk.c ("disk" case),
# test_cache_bench.c (--bench mode).
add_executable(test_cache ${CMAKE_CURRENT_LIST_DIR}/test_cache.c
                          ${CMAKE_CURRENT_LIST_DIR}/test_cache_disk.c
                          ${CMAKE_CURRENT_LIST_DIR}/test_cache_bench.c)
target_link_libraries(test_cache PRIVATE imagesfs_cache PkgConfig::CHECK Threads::Threads)
add_test(NAME unit_cache COMMAND test_cache)
set_tests_properties(unit_cache PROPERTIES TIMEOUT 60 LABELS unit)
