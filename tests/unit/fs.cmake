# Unit tests of fs/ pure pieces (tests/unit/test_fs.c): the inode table and how listed
# images become nodes. Links the fs sources it tests directly (no mount needed).
add_executable(test_fs ${CMAKE_CURRENT_LIST_DIR}/test_fs.c
                       ${CMAKE_SOURCE_DIR}/fs/fs_node.c ${CMAKE_SOURCE_DIR}/fs/fs_list.c
                       ${CMAKE_SOURCE_DIR}/fs/fs_fresh.c ${CMAKE_SOURCE_DIR}/fs/fs_stamp.c
                       ${CMAKE_SOURCE_DIR}/fs/fs_log.c ${CMAKE_SOURCE_DIR}/fs/fs_xattr.c
                       ${CMAKE_SOURCE_DIR}/fs/fs_times.c ${CMAKE_SOURCE_DIR}/fs/fs_local.c
                       ${CMAKE_SOURCE_DIR}/fs/fs_control.c
                       ${CMAKE_SOURCE_DIR}/fs/fs_deliver.c ${CMAKE_SOURCE_DIR}/fs/fs_special.c)
target_compile_definitions(test_fs PRIVATE IMAGESFS_VERSION="${PROJECT_VERSION}")
target_include_directories(test_fs PRIVATE ${CMAKE_SOURCE_DIR}/fs)
target_link_libraries(test_fs PRIVATE imagesfs_api imagesfs_cache imagesfs_journal PkgConfig::FUSE3 PkgConfig::CHECK
                      Threads::Threads)
add_test(NAME unit_fs COMMAND test_fs)
set_tests_properties(unit_fs PROPERTIES TIMEOUT 60 LABELS unit)
