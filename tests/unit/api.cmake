# Unit tests of the API client (tests/unit/test_api.c): pure pieces (errno table, parsing,
# multipart encoder, retry policy, rate limiter) and the HTTP layer against a scripted
# loopback server (fake_http.c) for retries, caps and failure paths.
add_executable(test_api ${CMAKE_CURRENT_LIST_DIR}/test_api.c ${CMAKE_CURRENT_LIST_DIR}/test_api_http.c
                        ${CMAKE_CURRENT_LIST_DIR}/fake_http.c)
target_link_libraries(test_api PRIVATE imagesfs_api PkgConfig::CHECK)
add_test(NAME unit_api COMMAND test_api)
set_tests_properties(unit_api PROPERTIES TIMEOUT 300 LABELS unit)

# Signed delivery URLs (api/api_sign.c) against the documented example.
add_executable(test_api_sign ${CMAKE_CURRENT_LIST_DIR}/test_api_sign.c)
target_link_libraries(test_api_sign PRIVATE imagesfs_api PkgConfig::CHECK)
add_test(NAME unit_api_sign COMMAND test_api_sign)
set_tests_properties(unit_api_sign PROPERTIES TIMEOUT 60 LABELS unit)

# The batch token pool (tests/unit/test_api_batch.c), no server.
add_executable(test_api_batch ${CMAKE_CURRENT_LIST_DIR}/test_api_batch.c)
target_link_libraries(test_api_batch PRIVATE imagesfs_api PkgConfig::CHECK)
add_test(NAME unit_api_batch COMMAND test_api_batch)
set_tests_properties(unit_api_batch PROPERTIES TIMEOUT 60 LABELS unit)
