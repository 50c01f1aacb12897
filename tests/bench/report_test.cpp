// SPDX-License-Identifier: Apache-2.0
#include "fetchd/bench/report.hpp"

#include <gtest/gtest.h>

namespace fetchd::bench {
namespace {

Row good_row() {
  Row row;
  row.profile = "latency";
  row.strategy = "event-loop";
  row.concurrency = 1000;
  row.files = 10000;
  row.size = 4096;
  row.bytes = 10000ULL * 4096;
  row.wall_s = 2.0;
  row.process_wall_s = 2.5;
  row.cpu_user_s = 1.0;
  row.cpu_sys_s = 0.5;
  row.maxrss_mib = 42.3;
  row.tree_peak_rss_mib = 40.5;
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
  ASSERT_TRUE(row.cpu_percent());
  EXPECT_DOUBLE_EQ(*row.cpu_percent(), 1.5 / 2.5 * 100);  // over the child's whole life
}

TEST(Row, PeakMemoryIsMaxrssExceptForProcessPools) {
  auto row = good_row();
  EXPECT_EQ(row.peak_rss_mib(), 42.3);
  for (const char* pool : {"process-pool", "process-pool-blocking"}) {
    row.strategy = pool;
    row.tree_peak_rss_mib = 130.0;
    EXPECT_EQ(row.peak_rss_mib(), 130.0) << pool;
    row.tree_peak_rss_mib.reset();  // a row too short to sample: the largest process is all there is
    EXPECT_EQ(row.peak_rss_mib(), 42.3) << pool;
  }
}

Row refused_row() {
  Row row;
  row.profile = "latency";
  row.strategy = "thread-pool";
  row.concurrency = 10000;
  row.files = 10000;
  row.refused = "10000 threads, over bench's cap of 2000 threads";
  return row;
}

TEST(Row, ARefusedRowIsNoFailureAndHasNoNumbers) {
  auto row = refused_row();
  EXPECT_FALSE(row.measured());
  EXPECT_TRUE(row.ok());
  EXPECT_FALSE(row.files_per_s());
  EXPECT_FALSE(row.cpu_percent());
  EXPECT_FALSE(row.peak_rss_mib());
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
  for (std::string_view column : {"strategy", "via", "concurrency", "files", "MiB", "wall s", "ack s",
                                  "files/s", "MiB/s", "CPU s", "CPU %", "peak MiB", "tree MiB", "failures"}) {
    EXPECT_NE(header.find(column), std::string::npos) << column;
  }
  EXPECT_EQ(line.rfind("event-loop", 0), 0U) << line;
  EXPECT_NE(line.find(" 5000 "), std::string::npos) << line;
  EXPECT_NE(line.find(" 1.50 "), std::string::npos) << line;
  EXPECT_NE(line.find(" 42.3 "), std::string::npos) << line;
  EXPECT_NE(line.find(" 40.5 "), std::string::npos) << line;
  EXPECT_NE(line.find(" 60 "), std::string::npos) << line;  // CPU %
}

TEST(Table, AServeRowShowsViaAndItsSubmitTime) {
  auto row = good_row();
  row.via = "serve";
  row.submit_ack_s = 0.125;
  auto line = format_table_row(row);
  EXPECT_EQ(line.size(), format_table_header().size()) << line;
  EXPECT_NE(line.find(" serve "), std::string::npos) << line;
  EXPECT_NE(line.find(" 0.125 "), std::string::npos) << line;
  // A run row has no submit time: a dash.
  auto run_line = format_table_row(good_row());
  EXPECT_NE(run_line.find(" run "), std::string::npos) << run_line;
  EXPECT_NE(run_line.find(" - "), std::string::npos) << run_line;
}

TEST(Table, TheFootnoteNamesTheChildItMeasures) {
  EXPECT_NE(table_footnote().find("`fetchd run`"), std::string::npos);
  EXPECT_EQ(table_footnote().find("serve"), std::string::npos);
  const auto serve = table_footnote("serve");
  EXPECT_NE(serve.find("`fetchd serve`"), std::string::npos) << serve;
  EXPECT_NE(serve.find("ack s"), std::string::npos) << serve;
}

TEST(Table, TheLongestStrategyNameFits) {
  auto row = good_row();
  row.strategy = "process-pool-blocking";
  EXPECT_EQ(format_table_row(row).size(), format_table_header().size());
  EXPECT_EQ(format_table_row(row).rfind("process-pool-blocking ", 0), 0U);
}

TEST(Table, RefusedRowSaysWhyInsteadOfNumbers) {
  auto line = format_table_row(refused_row());
  EXPECT_EQ(line.rfind("thread-pool ", 0), 0U) << line;
  EXPECT_NE(line.find(" 10000 "), std::string::npos) << line;
  EXPECT_NE(line.find("refused: 10000 threads, over bench's cap of 2000 threads"), std::string::npos) << line;
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
  for (const char* key :
       {"strategy",     "via",           "submit_ack_s",   "concurrency",   "files",
        "bytes",        "wall_s",        "files_per_s",    "mib_per_s",     "cpu_s",
        "peak_rss_mib", "failures",      "profile",        "cpu_percent",   "tree_peak_rss_mib",
        "refused",      "workers",       "process_wall_s", "inline_checks", "maxrss_mib",
        "tree_samples", "sampler_cpu_s", "estimated_mib"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_EQ(j["strategy"], "event-loop");
  EXPECT_EQ(j["concurrency"], 1000);
  EXPECT_EQ(j["files"], 10000);
  EXPECT_EQ(j["failures"], 0);
  EXPECT_DOUBLE_EQ(j["files_per_s"].get<double>(), 5000.0);
  EXPECT_DOUBLE_EQ(j["process_wall_s"].get<double>(), 2.5);
  EXPECT_DOUBLE_EQ(j["peak_rss_mib"].get<double>(), 42.3);
  EXPECT_DOUBLE_EQ(j["tree_peak_rss_mib"].get<double>(), 40.5);
  EXPECT_DOUBLE_EQ(j["cpu_percent"].get<double>(), 60.0);
  EXPECT_EQ(j["profile"], "latency");
  EXPECT_TRUE(j["refused"].is_null());
  EXPECT_TRUE(j["workers"].is_null());
  EXPECT_EQ(j["via"], "run");
  EXPECT_TRUE(j["submit_ack_s"].is_null());
  EXPECT_FALSE(j.contains("error"));
}

TEST(Json, AServeRowHasItsSubmitTime) {
  auto row = good_row();
  row.via = "serve";
  row.submit_ack_s = 0.25;
  auto j = row_to_json(row);
  EXPECT_EQ(j["via"], "serve");
  EXPECT_DOUBLE_EQ(j["submit_ack_s"].get<double>(), 0.25);
}

TEST(Json, RefusedRowHasItsReasonAndNulls) {
  auto row = refused_row();
  row.workers = 7;
  auto j = row_to_json(row);
  EXPECT_EQ(j["refused"], "10000 threads, over bench's cap of 2000 threads");
  EXPECT_EQ(j["workers"], 7);
  EXPECT_EQ(j["failures"], 0);
  for (const char* key :
       {"wall_s", "files_per_s", "mib_per_s", "cpu_s", "cpu_percent", "peak_rss_mib", "tree_peak_rss_mib"}) {
    EXPECT_TRUE(j[key].is_null()) << key;
  }
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

// Splits one CSV record (RFC 4180 quoting), for checking what rows_to_csv wrote.
std::vector<std::string> parse_csv_line(std::string_view line) {
  std::vector<std::string> fields(1);
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        fields.back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        fields.back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      fields.emplace_back();
    } else {
      fields.back() += c;
    }
  }
  return fields;
}

std::vector<std::string> csv_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < text.size()) {
    auto end = text.find("\r\n", start);
    EXPECT_NE(end, std::string::npos) << "every line ends in CRLF";
    if (end == std::string::npos) break;
    lines.push_back(text.substr(start, end - start));
    start = end + 2;
  }
  return lines;
}

TEST(Csv, HeaderAndOneLinePerRowWithTheJsonValues) {
  auto refused = refused_row();
  refused.refused = "needs \"more\", much more";  // a comma and quotes: must be quoted
  auto serve = good_row();
  serve.via = "serve";
  serve.submit_ack_s = 0.5;
  std::vector<Row> rows{good_row(), refused, serve};
  auto lines = csv_lines(rows_to_csv(rows));
  ASSERT_EQ(lines.size(), 4U);
  EXPECT_EQ(lines[0],
            "profile,strategy,via,concurrency,workers,files,bytes,wall_s,submit_ack_s,files_per_s,mib_per_s,"
            "cpu_s,cpu_percent,peak_rss_mib,tree_peak_rss_mib,failures,refused");
  const auto columns = csv_columns();
  for (std::size_t r = 0; r < rows.size(); ++r) {
    auto fields = parse_csv_line(lines[r + 1]);
    ASSERT_EQ(fields.size(), columns.size()) << lines[r + 1];
    auto j = row_to_json(rows[r]);
    for (std::size_t c = 0; c < columns.size(); ++c) {
      const auto& value = j[std::string(columns[c])];
      if (value.is_null()) {
        EXPECT_EQ(fields[c], "") << columns[c];
      } else if (value.is_string()) {
        EXPECT_EQ(fields[c], value.get<std::string>()) << columns[c];
      } else {
        EXPECT_EQ(nlohmann::json::parse(fields[c]), value) << columns[c];
      }
    }
  }
  EXPECT_NE(lines[2].find("\"needs \"\"more\"\", much more\""), std::string::npos) << lines[2];
}

TEST(Csv, NoRowsIsJustTheHeader) {
  EXPECT_EQ(csv_lines(rows_to_csv({})).size(), 1U);
}

}  // namespace
}  // namespace fetchd::bench
