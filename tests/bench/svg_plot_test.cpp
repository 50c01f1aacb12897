// SPDX-License-Identifier: Apache-2.0
#include "fetchd/bench/svg_plot.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>

namespace fetchd::bench {
namespace {

struct Element {
  std::string name;
  std::map<std::string, std::string> attributes;
};

// A tiny XML check, enough for what render_svg writes: every tag closed in order, attributes quoted, only the
// five predefined entities. Returns the elements in document order; fails the test on the first problem.
std::vector<Element> parse_xml(std::string_view doc) {
  std::vector<Element> elements;
  std::vector<std::string> open;
  std::size_t i = 0;
  auto fail = [&](const std::string& what) {
    ADD_FAILURE() << what << " at byte " << i << ": " << doc.substr(i, 60);
    return std::vector<Element>{};
  };
  auto check_entities = [&](std::string_view text) {
    for (std::size_t a = text.find('&'); a != std::string_view::npos; a = text.find('&', a + 1)) {
      bool known = false;
      for (std::string_view e : {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"})
        known |= text.substr(a).starts_with(e);
      if (!known) return false;
    }
    return text.find('<') == std::string_view::npos;
  };
  if (doc.starts_with("<?xml")) i = doc.find("?>") + 2;
  while (i < doc.size()) {
    auto lt = doc.find('<', i);
    if (!check_entities(doc.substr(i, lt == std::string_view::npos ? std::string_view::npos : lt - i))) {
      return fail("bad text");
    }
    if (lt == std::string_view::npos) break;
    i = lt;
    auto gt = doc.find('>', i);
    if (gt == std::string_view::npos) return fail("unterminated tag");
    std::string_view tag = doc.substr(i + 1, gt - i - 1);
    if (tag.starts_with('/')) {
      if (open.empty() || open.back() != tag.substr(1)) return fail("mismatched closing tag");
      open.pop_back();
    } else {
      const bool self_closing = tag.ends_with('/');
      if (self_closing) tag.remove_suffix(1);
      Element e;
      auto space = tag.find_first_of(" \n");
      e.name = std::string(tag.substr(0, space));
      std::string_view attrs = space == std::string_view::npos ? std::string_view() : tag.substr(space);
      while (true) {
        auto start = attrs.find_first_not_of(" \n");
        if (start == std::string_view::npos) break;
        attrs.remove_prefix(start);
        auto eq = attrs.find("=\"");
        if (eq == std::string_view::npos) return fail("attribute without a quoted value");
        auto end = attrs.find('"', eq + 2);
        if (end == std::string_view::npos) return fail("unterminated attribute");
        auto value = attrs.substr(eq + 2, end - eq - 2);
        if (!check_entities(value)) return fail("bad attribute value");
        e.attributes[std::string(attrs.substr(0, eq))] = std::string(value);
        attrs.remove_prefix(end + 1);
      }
      if (!self_closing) open.push_back(e.name);
      elements.push_back(std::move(e));
    }
    i = gt + 1;
  }
  if (!open.empty()) return fail("unclosed <" + open.back() + ">");
  return elements;
}

Row row(std::string profile, std::string strategy, int concurrency, double files_per_s, double rss) {
  Row r;
  r.profile = std::move(profile);
  r.strategy = std::move(strategy);
  r.concurrency = concurrency;
  r.files = 1000;
  r.bytes = 1000 * 4096;
  r.wall_s = 1000 / files_per_s;
  r.process_wall_s = *r.wall_s;
  r.maxrss_mib = rss;
  r.tree_peak_rss_mib = rss;
  return r;
}

std::vector<Row> sweep() {
  std::vector<Row> rows;
  for (const char* s : {"event-loop", "curl-multi", "thread-pool", "process-pool"}) {
    for (int c : {10, 100, 1000, 10000}) rows.push_back(row("latency", s, c, c * 3.0, 20 + c / 100.0));
  }
  for (const char* s : {"event-loop", "curl-multi", "thread-pool", "process-pool"}) {
    rows.push_back(row("cpu", s, 16, 5, 30));
  }
  return rows;
}

std::size_t count(const std::vector<Element>& elements, std::string_view name) {
  return static_cast<std::size_t>(std::ranges::count(elements, name, &Element::name));
}

TEST(RenderSvg, IsWellFormedWithOnePolylinePerStrategyAndPanel) {
  auto svg = render_svg(sweep());
  auto elements = parse_xml(svg);
  ASSERT_FALSE(elements.empty());
  EXPECT_EQ(elements.front().name, "svg");
  EXPECT_EQ(elements.front().attributes["xmlns"], "http://www.w3.org/2000/svg");
  // Two profiles x two panels, four strategies in each.
  EXPECT_EQ(count(elements, "polyline"), 2U * 2 * 4);
  std::map<std::string, int> per_strategy;
  for (const auto& e : elements) {
    if (e.name == "polyline") ++per_strategy[e.attributes.at("data-strategy")];
  }
  for (const char* s : {"event-loop", "curl-multi", "thread-pool", "process-pool"})
    EXPECT_EQ(per_strategy[s], 4) << s;
  // A dot per point: 16 latency rows and 4 cpu rows, in both panels, and one per legend entry.
  EXPECT_EQ(count(elements, "circle"), (16U + 4) * 2 + 4);
  for (std::string_view label : {">10<", ">100<", ">1k<", ">10k<", "concurrency (log scale)", "files/s",
                                 "peak memory MiB", "latency: files/s", "cpu: peak memory (MiB)"}) {
    EXPECT_NE(svg.find(label), std::string::npos) << label;
  }
}

TEST(RenderSvg, PointsLieOnALogScale) {
  std::vector<Row> rows;
  for (int c : {10, 100, 1000}) rows.push_back(row("latency", "event-loop", c, 100, 10));
  auto elements = parse_xml(render_svg(rows));
  std::vector<double> xs;
  for (auto& e : elements) {
    if (e.name == "circle" && e.attributes["fill"] != "" && xs.size() < 3)
      xs.push_back(std::stod(e.attributes["cx"]));
  }
  ASSERT_EQ(xs.size(), 3U);
  // Equal ratios of concurrency, equal distances.
  EXPECT_NEAR(xs[1] - xs[0], xs[2] - xs[1], 0.15);
  EXPECT_GT(xs[1], xs[0]);
}

TEST(RenderSvg, LeavesOutRefusedAndFailedRowsButNamesTheirStrategy) {
  auto rows = sweep();
  Row refused;
  refused.profile = "latency";
  refused.strategy = "process-pool-blocking";
  refused.concurrency = 1000;
  refused.refused = "1000 worker processes, over bench's cap of 64 processes";
  rows.push_back(refused);
  rows[0].failures = 3;  // event-loop x10
  auto svg = render_svg(rows);
  auto elements = parse_xml(svg);
  EXPECT_EQ(count(elements, "polyline"), 2U * 2 * 4);
  EXPECT_NE(svg.find("process-pool-blocking (not measured)"), std::string::npos);
  EXPECT_EQ(count(elements, "circle"), (15U + 4) * 2 + 5);
}

TEST(RenderSvg, NoRowsIsStillADocument) {
  auto svg = render_svg({});
  auto elements = parse_xml(svg);
  ASSERT_FALSE(elements.empty());
  EXPECT_EQ(count(elements, "polyline"), 0U);
  EXPECT_NE(svg.find("no rows"), std::string::npos);
}

TEST(RenderSvg, EscapesNames) {
  auto rows = std::vector<Row>{row("a<b", "x&\"y", 10, 1, 1)};
  auto svg = render_svg(rows);
  EXPECT_FALSE(parse_xml(svg).empty());
  EXPECT_NE(svg.find("x&amp;&quot;y"), std::string::npos);
  EXPECT_NE(svg.find("a&lt;b"), std::string::npos);
}

TEST(Axes, LogDecadesCoverTheRange) {
  EXPECT_EQ(log_decades(10, 10000), (std::vector<double>{10, 100, 1000, 10000}));
  EXPECT_EQ(log_decades(4, 8), (std::vector<double>{1, 10}));
  EXPECT_EQ(log_decades(16, 16), (std::vector<double>{10, 100}));
  EXPECT_EQ(log_decades(10, 10), (std::vector<double>{10, 100}));
  EXPECT_EQ(log_decades(1, 1000), (std::vector<double>{1, 10, 100, 1000}));
}

TEST(Axes, NiceTicksReachTheTop) {
  EXPECT_EQ(nice_ticks(93), (std::vector<double>{0, 20, 40, 60, 80, 100}));
  EXPECT_EQ(nice_ticks(100), (std::vector<double>{0, 20, 40, 60, 80, 100}));
  EXPECT_EQ(nice_ticks(12), (std::vector<double>{0, 2.5, 5, 7.5, 10, 12.5}));
  EXPECT_EQ(nice_ticks(0), (std::vector<double>{0, 1}));
  auto big = nice_ticks(6451);
  EXPECT_GE(big.back(), 6451);
  EXPECT_LE(big.size(), 7U);
}

TEST(Axes, TickLabels) {
  EXPECT_EQ(tick_label(10), "10");
  EXPECT_EQ(tick_label(2.5), "2.5");
  EXPECT_EQ(tick_label(1000), "1k");
  EXPECT_EQ(tick_label(2500), "2.5k");
  EXPECT_EQ(tick_label(10000), "10k");
  EXPECT_EQ(tick_label(1'500'000), "1.5M");
}

}  // namespace
}  // namespace fetchd::bench
