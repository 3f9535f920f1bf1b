# Unit tests of api/api_doc.c (documents shown through the filesystem).
add_executable(test_api_doc ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_api_doc.c)
target_link_libraries(test_api_doc PRIVATE imagesfs_api PkgConfig::CHECK)
add_test(NAME unit_api_doc COMMAND test_api_doc)
