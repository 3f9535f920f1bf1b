# Integration tests of the API client against a real emulator process
# (tests/integration/test_client*.c, started through tests/support/emu_proc.c).
add_executable(test_client
  ${CMAKE_CURRENT_LIST_DIR}/test_client.c
  ${CMAKE_CURRENT_LIST_DIR}/test_client_more.c
  ${CMAKE_CURRENT_LIST_DIR}/../unit/fake_http.c) # loopback origin for upload-by-URL
target_include_directories(test_client PRIVATE ${CMAKE_CURRENT_LIST_DIR}
                                               ${CMAKE_CURRENT_LIST_DIR}/../unit)
target_compile_definitions(test_client PRIVATE IMAGESFS_TEST_BIN_DIR="${CMAKE_BINARY_DIR}/bin")
target_link_libraries(test_client PRIVATE imagesfs_api imagesfs_testsupport PkgConfig::CHECK)
add_dependencies(test_client imagesfs-emulator)
add_test(NAME integration_client COMMAND test_client)
set_tests_properties(integration_client PROPERTIES
  ENVIRONMENT "IMAGESFS_BIN=${CMAKE_BINARY_DIR}/bin"
  TIMEOUT 900 LABELS integration)
