// SPDX-License-Identifier: Apache-2.0
// fetchctl's pure pieces: units, bars, tables, sanitizing, the stats block, watch lines and the live view.
#include "format.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "watch_view.hpp"

namespace {

using namespace fetchd::ctl;
using nlohmann::json;

TEST(FormatBytes, BinaryUnitsWithOneDecimal) {
  EXPECT_EQ(format_bytes(0), "0 B");
  EXPECT_EQ(format_bytes(1023), "1023 B");
  EXPECT_EQ(format_bytes(1024), "1.0 KiB");
  EXPECT_EQ(format_bytes(1536), "1.5 KiB");
  EXPECT_EQ(format_bytes(12 * 1048576 + 314573), "12.3 MiB");
  EXPECT_EQ(format_bytes(std::uint64_t{5} << 30), "5.0 GiB");
  EXPECT_EQ(format_bytes(UINT64_MAX), "16.0 EiB");
}

TEST(FormatBytes, NeverPrints1024OfAUnit) {
  EXPECT_EQ(format_bytes(1048575), "1.0 MiB");  // 1023.999 KiB
  EXPECT_EQ(format_bytes(1024 * 1023 + 900), "1023.9 KiB");
  EXPECT_EQ(format_bytes(1024 * 1023 + 1000), "1.0 MiB");  // 1023.98 KiB
  EXPECT_EQ(format_bytes((std::uint64_t{1} << 30) - 1), "1.0 GiB");
}

TEST(FormatRate, PerSecondAndClamped) {
  EXPECT_EQ(format_rate(1536.0), "1.5 KiB/s");
  EXPECT_EQ(format_rate(0), "0 B/s");
  EXPECT_EQ(format_rate(-5), "0 B/s");
  EXPECT_EQ(format_rate(std::numeric_limits<double>::infinity()), "0 B/s");
}

TEST(FormatSeconds, TwoMostSignificantUnits) {
  EXPECT_EQ(format_seconds(0), "0s");
  EXPECT_EQ(format_seconds(45.9), "45s");
  EXPECT_EQ(format_seconds(125), "2m05s");
  EXPECT_EQ(format_seconds(3725), "1h02m");
  EXPECT_EQ(format_seconds(3 * 86400 + 4 * 3600 + 59), "3d04h");
}

TEST(Sanitize, EscapesControlsAndInvalidUtf8ButKeepsText) {
  EXPECT_EQ(sanitize("plain/path.bin"), "plain/path.bin");
  EXPECT_EQ(sanitize("caf\xc3\xa9 \xe2\x9c\x93"), "caf\xc3\xa9 \xe2\x9c\x93");
  EXPECT_EQ(sanitize("a\x1b[2Jb"), "a\\x1b[2Jb");
  EXPECT_EQ(sanitize("line\nbreak\ttab\x7f"), "line\\x0abreak\\x09tab\\x7f");
  EXPECT_EQ(sanitize("\xc2\x9b"
                     "31m"),
            "\\x9b31m");  // C1 CSI
  EXPECT_EQ(sanitize("bad\xff\xfe"), "bad\\xff\\xfe");
  EXPECT_EQ(sanitize("\xc0\xaf"), "\\xc0\\xaf");           // overlong '/'
  EXPECT_EQ(sanitize("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // surrogate
  EXPECT_EQ(sanitize("cut\xe2\x9c"), "cut\\xe2\\x9c");
}

TEST(Truncate, CountsCodePointsAndKeepsTheInformativeEnd) {
  EXPECT_EQ(display_width("café"), 4u);
  EXPECT_EQ(truncate_left("dir/sub/file.bin", 20), "dir/sub/file.bin");
  EXPECT_EQ(truncate_left("dir/sub/file.bin", 9), "…file.bin");
  EXPECT_EQ(truncate_left("dir/sub/file.bin", 9, false), "~file.bin");
  EXPECT_EQ(truncate_right("some long message", 8), "some lo…");
  EXPECT_EQ(truncate_right("ééééé", 3), "éé…");
  EXPECT_EQ(truncate_left("ééééé", 3), "…éé");
  EXPECT_EQ(truncate_left("abc", 1), "…");
  EXPECT_EQ(truncate_left("abc", 0), "");
  EXPECT_EQ(pad_left("é", 3), "  é");
  EXPECT_EQ(pad_right("é", 3), "é  ");
}

TEST(RenderBar, AlwaysExactlyTheWidth) {
  for (double f : {-1.0, 0.0, 0.01, 0.33, 0.5, 0.999, 1.0, 2.0, std::nan("")}) {
    EXPECT_EQ(display_width(render_bar(f, 20, true)), 20u) << f;
    EXPECT_EQ(render_bar(f, 20, false).size(), 20u) << f;
  }
  EXPECT_EQ(display_width(render_unknown_bar(7, true)), 7u);
}

TEST(RenderBar, FillsInEighthsOrHashes) {
  EXPECT_EQ(render_bar(0.0, 4, false), "----");
  EXPECT_EQ(render_bar(0.5, 4, false), "##--");
  EXPECT_EQ(render_bar(1.0, 4, false), "####");
  EXPECT_EQ(render_bar(0.5, 4, true), "██  ");
  EXPECT_EQ(render_bar(0.5625, 4, true), "██▎ ");  // 2.25 cells
  EXPECT_EQ(render_bar(1.0, 4, true), "████");
  EXPECT_EQ(render_bar(0.0, 3, true), "   ");
}

TEST(RedactUrl, DropsUserinfoAndQuery) {
  EXPECT_EQ(redact_url("https://example.org/a.bin"), "https://example.org/a.bin");
  EXPECT_EQ(redact_url("https://u:p@example.org/a.bin"), "https://example.org/a.bin");
  EXPECT_EQ(redact_url("https://example.org/a?token=s#frag"), "https://example.org/a?…#frag");
  EXPECT_EQ(redact_url("http://u@h:8080"), "http://h:8080");
  EXPECT_EQ(redact_url("https://h/path@not-userinfo"), "https://h/path@not-userinfo");
}

TEST(Table, AlignsAcrossPagesAndNeverNarrows) {
  Table t({{"ID", Table::Align::kRight}, {"NAME", Table::Align::kLeft}, {"NOTE", Table::Align::kLeft}});
  t.fit({{"1", "a", "x"}, {"1000", "long-name", ""}});
  EXPECT_EQ(t.header(), "  ID  NAME       NOTE\n");
  EXPECT_EQ(t.row({"1", "a", "x"}), "   1  a          x\n");
  EXPECT_EQ(t.row({"1000", "long-name", ""}), "1000  long-name\n");  // no trailing blanks
  t.fit({{"2", "b", "y"}});                                          // a later, narrower page
  EXPECT_EQ(t.row({"2", "b", "y"}), "   2  b          y\n");
  t.fit({{"123456", "é", "z"}});
  EXPECT_EQ(t.row({"123456", "é", "z"}), "123456  é          z\n");
}

TEST(JobRow, FormatsAndSanitizesAJobObject) {
  json job = {{"id", 12},
              {"state", "failed"},
              {"attempts", 3},
              {"bytes", 2048},
              {"dest", "a\x1b.bin"},
              {"error", "HTTP 404"},
              {"url", "https://x/a"}};
  EXPECT_EQ(job_row(job),
            (std::vector<std::string>{"12", "failed", "3", "2.0 KiB", "a\\x1b.bin", "HTTP 404"}));
  json done = {{"id", 13}, {"state", "done"}, {"attempts", 1}, {"bytes", 0}, {"dest", "b"}, {"error", ""}};
  done["skipped"] = true;
  EXPECT_EQ(job_row(done), (std::vector<std::string>{"13", "done (skipped)", "1", "0 B", "b", ""}));
  done["skipped"] = false;
  EXPECT_EQ(job_row(done)[1], "done");
  done["skipped"] = "yes";  // not a boolean: not trusted
  EXPECT_EQ(job_row(done)[1], "done");
  json sparse = {{"id", "not a number"}};
  EXPECT_EQ(job_row(sparse), (std::vector<std::string>{"-", "-", "-", "-", "-", ""}));
  EXPECT_EQ(job_row(json::array()), (std::vector<std::string>{"-", "-", "-", "-", "-", ""}));
}

TEST(FormatStats, KnownKeysInOrderThenOthers) {
  json stats = {{"uptime_s", 59.0},   {"active", 1},   {"strategy", "thread-pool"},
                {"mib_per_s", 2.345}, {"zz_new", "x"}, {"bytes", 1024}};
  EXPECT_EQ(format_stats(stats),
            "strategy    thread-pool\n"
            "active      1\n"
            "downloaded  1.0 KiB\n"
            "MiB/s       2.35\n"
            "uptime      59s\n"
            "zz_new      x\n");
  EXPECT_EQ(format_stats(json::object()), "");
}

TEST(FormatEvent, OneLinePerKind) {
  json job = {{"id", 4},         {"url", "https://u:p@h/x?k=1"},
              {"dest", "x"},     {"state", "queued"},
              {"attempts", 0},   {"bytes", 0},
              {"size", nullptr}, {"error", ""}};
  EXPECT_EQ(format_event({{"event", "queued"}, {"job", job}}), "queued  4  x  https://h/x?…");
  job["state"] = "running";
  job["bytes"] = 512;
  EXPECT_EQ(format_event({{"event", "progress"}, {"job", job}}), "progress  4  x  512 B");
  job["size"] = 2048;
  EXPECT_EQ(format_event({{"event", "progress"}, {"job", job}}), "progress  4  x  512 B of 2.0 KiB (25%)");
  job["bytes"] = 2048;
  EXPECT_EQ(format_event({{"event", "done"}, {"job", job}}), "done  4  x  2.0 KiB");
  job["skipped"] = false;
  EXPECT_EQ(format_event({{"event", "done"}, {"job", job}}), "done  4  x  2.0 KiB");
  job["skipped"] = true;
  job["bytes"] = 0;
  EXPECT_EQ(format_event({{"event", "done"}, {"job", job}}),
            "done  4  x  skipped (the file was there already)");
  job.erase("skipped");
  job["error"] = "HTTP 503\nretry";
  job["attempts"] = 4;
  EXPECT_EQ(format_event({{"event", "failed"}, {"job", job}}), "failed  4  x  attempt 4: HTTP 503\\x0aretry");
  EXPECT_EQ(format_event({{"event", "stats"}, {"stats", {{"active", 2}, {"done", 1}, {"mib_per_s", 1.5}}}}),
            "stats active=2 done=1 MiB/s=1.50");
  EXPECT_EQ(format_event({{"event", "new-kind"}, {"x", 1}}), R"(new-kind  {"event":"new-kind","x":1})");
}

TEST(ProgressLine, FitsTheWidthWithOrWithoutBar) {
  std::string line = format_progress_line("sub/a.bin", 1048576, 4194304, 1536.0, 80, true);
  EXPECT_EQ(display_width(line), 80u);
  EXPECT_EQ(line.rfind("sub/a.bin ", 0), 0u);
  EXPECT_NE(line.find("[█████               ]   25%     1.0 MiB     1.5 KiB/s"), std::string::npos) << line;

  std::string unknown = format_progress_line("a", 10, std::nullopt, std::nullopt, 80, false);
  EXPECT_NE(unknown.find("[....................]    --        10 B            --"), std::string::npos)
      << unknown;

  std::string narrow = format_progress_line("a/very/long/destination/name.iso", 1, 2, 1.0, 50, false);
  EXPECT_LE(display_width(narrow), 50u);
  EXPECT_EQ(narrow.find('['), std::string::npos) << "no room for the bar: " << narrow;
  EXPECT_NE(narrow.find("name.iso"), std::string::npos) << "the end of the path stays: " << narrow;

  std::string tiny = format_progress_line("x", 1, 2, 1.0, 10, false);
  EXPECT_LE(display_width(tiny), 10u);
}

TEST(LocaleIsUtf8, FirstSetVariableWins) {
  EXPECT_TRUE(locale_is_utf8(nullptr, nullptr, "en_US.UTF-8"));
  EXPECT_TRUE(locale_is_utf8("", "C.utf8", "C"));
  EXPECT_FALSE(locale_is_utf8("C", nullptr, "en_US.UTF-8"));
  EXPECT_FALSE(locale_is_utf8(nullptr, nullptr, nullptr));
}

TEST(WatchView, TracksRunningJobsAndTheirRate) {
  using namespace std::chrono_literals;
  WatchView view;
  WatchView::Clock::time_point t0{std::chrono::seconds(100)};
  auto ev = [](const char* name, int id, const char* state, int bytes) {
    return json{{"event", name},
                {"job",
                 {{"id", id},
                  {"dest", "f" + std::to_string(id)},
                  {"state", state},
                  {"bytes", bytes},
                  {"size", 4096}}}};
  };
  view.apply(ev("started", 1, "running", 0), t0);
  view.apply(ev("started", 2, "running", 0), t0);
  EXPECT_EQ(view.running(), 2u);
  EXPECT_FALSE(view.rate(1).has_value());
  view.apply(ev("progress", 1, "running", 10), t0 + 10ms);  // too close to the start for a sample
  EXPECT_FALSE(view.rate(1).has_value());
  view.apply(ev("progress", 1, "running", 1000), t0 + 1s);
  ASSERT_TRUE(view.rate(1).has_value());
  EXPECT_DOUBLE_EQ(*view.rate(1), 1000.0);
  view.apply(ev("progress", 1, "running", 4000), t0 + 2s);
  EXPECT_DOUBLE_EQ(*view.rate(1), 2000.0);  // half the new sample (3000/s), half the old (1000/s)
  view.apply(ev("progress", 1, "running", 0), t0 + 3s);  // restarted from zero
  EXPECT_FALSE(view.rate(1).has_value());
  view.apply(ev("done", 2, "done", 4096), t0 + 3s);
  EXPECT_EQ(view.running(), 1u);
  view.apply(ev("queued", 1, "queued", 0), t0 + 4s);  // back in the queue for a retry
  EXPECT_EQ(view.running(), 0u);
  view.apply(json{{"event", "progress"}}, t0);  // malformed events are ignored
  view.apply(json::array(), t0);
  EXPECT_EQ(view.running(), 0u);
}

TEST(WatchView, RendersBarsThenTotalsWithinTheHeight) {
  WatchView view;
  WatchView::Clock::time_point t{std::chrono::seconds(1)};
  auto lines = view.render(60, 10, false);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], "waiting for the first stats event");
  for (int id = 1; id <= 5; ++id) {
    view.apply({{"event", "started"},
                {"job",
                 {{"id", id},
                  {"dest", "file" + std::to_string(id)},
                  {"state", "running"},
                  {"bytes", 0},
                  {"size", nullptr}}}},
               t);
  }
  view.apply({{"event", "stats"}, {"stats", {{"active", 5}, {"queued", 0}, {"done", 1}, {"mib_per_s", 3.0}}}},
             t);
  lines = view.render(60, 10, false);
  ASSERT_EQ(lines.size(), 6u);
  EXPECT_EQ(lines[0].rfind("file1 ", 0), 0u);
  EXPECT_EQ(lines[4].rfind("file5 ", 0), 0u);
  EXPECT_EQ(lines[5], "active 5  queued 0  done 1  3.00 MiB/s");
  lines = view.render(60, 4, false);  // 2 bars, the overflow line, the totals
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[1].rfind("file2 ", 0), 0u);
  EXPECT_EQ(lines[2], "... and 3 more running");
  for (const auto& l : view.render(30, 10, true)) EXPECT_LE(display_width(l), 30u) << l;
  EXPECT_EQ(view.render(60, 1, false).size(), 1u);  // only the totals
  EXPECT_TRUE(view.render(60, 0, false).empty());
}

}  // namespace
