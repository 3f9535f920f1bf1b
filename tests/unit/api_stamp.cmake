# Unit tests of api/api_stamp.c (mtime and size stored in an image's metadata object).
add_executable(test_api_stamp ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_api_stamp.c)
target_link_libraries(test_api_stamp PRIVATE imagesfs_api PkgConfig::CHECK)
add_test(NAME unit_api_stamp COMMAND test_api_stamp)
