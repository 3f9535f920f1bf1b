# Unit tests of journal/ (tests/unit/test_journal.c): on-disk records, pins, replay at open,
# damaged entries, and settling against a scripted loopback server (fake_http.c). No mount.
add_executable(test_journal ${CMAKE_CURRENT_LIST_DIR}/test_journal.c
                            ${CMAKE_CURRENT_LIST_DIR}/fake_http.c)
target_link_libraries(test_journal PRIVATE imagesfs_journal PkgConfig::CHECK Threads::Threads)
add_test(NAME unit_journal COMMAND test_journal)
set_tests_properties(unit_journal PROPERTIES TIMEOUT 120 LABELS unit)
