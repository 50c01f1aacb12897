// SPDX-License-Identifier: Apache-2.0
#include "fetchd/bench/report.hpp"

#include <gtest/gtest.h>

namespace fetchd::bench {
namespace {

Row good_row() {
  Row row;
  row.strategy = "event-loop";
  row.concurrency = 1000;
  row.files = 10000;
  row.size = 4096;
  row.bytes = 10000ULL * 4096;
  row.wall_s = 2.0;
  row.process_wall_s = 2.5;
  row.cpu_user_s = 1.0;
  row.cpu_sys_s = 0.5;
  row.peak_rss_mib = 42.3;
  row.child_status = "exit 0";
  return row;
}

TEST(Row, RatesComeFromTheChildsWallTime) {
  auto row = good_row();
  ASSERT_TRUE(row.files_per_s());
  EXPECT_DOUBLE_EQ(*row.files_per_s(), 5000.0);
  ASSERT_TRUE(row.mib_per_s());
  EXPECT_DOUBLE_EQ(*row.mib_per_s(), 10000.0 * 4096 / (1024 * 1024) / 2.0);
  EXPECT_DOUBLE_EQ(row.cpu_s(), 1.5);
}

TEST(Row, AFailedRowHasNoRate) {
  auto row = good_row();
  row.failures = 1;
  EXPECT_FALSE(row.files_per_s());
  EXPECT_FALSE(row.mib_per_s());
  row.failures = 0;
  row.wall_s.reset();
  EXPECT_FALSE(row.files_per_s());
}

TEST(Table, RowLinesUpWithHeader) {
  auto header = format_table_header();
  auto line = format_table_row(good_row());
  EXPECT_EQ(header.size(), line.size()) << header << "\n" << line;
  for (std::string_view column : {"strategy", "concurrency", "files", "MiB", "wall s", "files/s", "MiB/s",
                                  "CPU s", "peak RSS MiB", "failures"}) {
    EXPECT_NE(header.find(column), std::string::npos) << column;
  }
  EXPECT_EQ(line.rfind("event-loop", 0), 0U) << line;
  EXPECT_NE(line.find(" 5000 "), std::string::npos) << line;
  EXPECT_NE(line.find(" 1.50 "), std::string::npos) << line;
  EXPECT_NE(line.find(" 42.3 "), std::string::npos) << line;
}

TEST(Table, FailedRowShowsDashesNotRates) {
  auto row = good_row();
  row.failures = 3;
  auto line = format_table_row(row);
  EXPECT_EQ(line.find("5000"), std::string::npos) << line;
  EXPECT_NE(line.find(" - "), std::string::npos) << line;
  EXPECT_EQ(line.substr(line.size() - 2), " 3") << line;
  EXPECT_EQ(format_table_header().size(), line.size());
}

TEST(Json, HasEveryRequiredKey) {
  auto j = row_to_json(good_row());
  for (const char* key : {"strategy", "concurrency", "files", "bytes", "wall_s", "files_per_s", "mib_per_s",
                          "cpu_s", "peak_rss_mib", "failures", "process_wall_s", "inline_checks"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_EQ(j["strategy"], "event-loop");
  EXPECT_EQ(j["concurrency"], 1000);
  EXPECT_EQ(j["files"], 10000);
  EXPECT_EQ(j["failures"], 0);
  EXPECT_DOUBLE_EQ(j["files_per_s"].get<double>(), 5000.0);
  EXPECT_DOUBLE_EQ(j["process_wall_s"].get<double>(), 2.5);
  EXPECT_FALSE(j.contains("error"));
}

TEST(Json, FailedRowHasNullRatesAndItsError) {
  auto row = good_row();
  row.failures = 1;
  row.error = "fetchd run ended with exit 1";
  auto j = row_to_json(row);
  EXPECT_TRUE(j["files_per_s"].is_null());
  EXPECT_TRUE(j["mib_per_s"].is_null());
  EXPECT_EQ(j["error"], "fetchd run ended with exit 1");
}

TEST(Json, RowsMakeAnArray) {
  std::vector<Row> rows{good_row(), good_row()};
  auto j = rows_to_json(rows);
  ASSERT_TRUE(j.is_array());
  EXPECT_EQ(j.size(), 2U);
  EXPECT_TRUE(rows_to_json({}).is_array());
}

}  // namespace
}  // namespace fetchd::bench
