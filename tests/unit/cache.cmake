# Unit tests of cache/ (on-disk LRU blob cache). Included from tests/CMakeLists.txt.
add_executable(test_cache ${CMAKE_CURRENT_LIST_DIR}/test_cache.c)
target_link_libraries(test_cache PRIVATE imagesfs_cache PkgConfig::CHECK Threads::Threads)
add_test(NAME unit_cache COMMAND test_cache)
set_tests_properties(unit_cache PROPERTIES TIMEOUT 60 LABELS unit)
