// SPDX-License-Identifier: Apache-2.0
#include "fetchd/bench/svg_plot.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <optional>

#include "fetchd/bench/options.hpp"

namespace fetchd::bench {

namespace {

// Geometry, in SVG user units (pixels at 100%).
constexpr double kPanelWidth = 520;
constexpr double kPanelHeight = 330;
constexpr double kLeft = 78;  // room for the y tick labels and the axis label
constexpr double kRight = 18;
constexpr double kTop = 34;     // the panel's title
constexpr double kBottom = 56;  // x tick labels and the axis label
constexpr double kTitleHeight = 44;
constexpr double kLegendWidth = 230;
constexpr double kLegendRow = 22;
constexpr double kMargin = 10;
constexpr double kDotRadius = 3.5;
constexpr double kTickLength = 5;
constexpr int kMinorTicksPerDecade = 9;
constexpr int kTargetYTicks = 5;
constexpr double kThousand = 1000;
constexpr double kMillion = 1'000'000;

constexpr std::string_view kFallbackColour = "#7f7f7f";
// Colour-blind-safe palette (Okabe & Ito), one colour per strategy in kBenchStrategies order.
constexpr std::string_view kPalette[] = {"#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7"};

struct Point {
  double x;
  double y;
};

struct Metric {
  std::string_view title;
  std::string_view axis;
  std::function<std::optional<double>(const Row&)> value;
};

std::string_view colour_of(std::string_view strategy) {
  for (std::size_t i = 0; i < std::size(kBenchStrategies) && i < std::size(kPalette); ++i) {
    if (kBenchStrategies[i].name == strategy) return kPalette[i];
  }
  return kFallbackColour;
}

template <typename T, typename Key>
std::vector<T> first_appearance(std::span<const Row> rows, Key key) {
  std::vector<T> out;
  for (const auto& r : rows) {
    if (std::ranges::find(out, key(r)) == out.end()) out.push_back(key(r));
  }
  return out;
}

// A row drawn in the chart: it ran and nothing failed.
bool drawn(const Row& r) {
  return r.measured() && r.ok() && r.concurrency > 0;
}

class Panel {
 public:
  Panel(std::string& out, double x, double y) : out_(out), x0_(x + kLeft), y0_(y + kTop) {}

  void draw(std::string_view title, std::string_view axis, std::span<const Row> rows,
            std::span<const std::string> strategies, const Metric& metric) {
    std::map<std::string, std::vector<Point>, std::less<>> series;
    double low = 0;
    double high = 0;
    double top = 0;
    for (const auto& r : rows) {
      if (!drawn(r)) continue;
      auto value = metric.value(r);
      if (!value) continue;
      const double c = r.concurrency;
      low = low == 0 ? c : std::min(low, c);
      high = std::max(high, c);
      top = std::max(top, *value);
      series[r.strategy].push_back({c, *value});
    }
    out_ += fmt::format("<g class=\"panel\">\n<text class=\"title\" x=\"{:.1f}\" y=\"{:.1f}\">{}</text>\n",
                        x0_, y0_ - 12, xml_escape(title));
    out_ += fmt::format(
        "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"#ffffff\" "
        "stroke=\"#444444\"/>\n",
        x0_, y0_, width(), height());
    if (series.empty()) {
      out_ += fmt::format(
          "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" fill=\"#777777\">no measured "
          "rows</text>\n</g>\n",
          x0_ + width() / 2, y0_ + height() / 2);
      return;
    }
    decades_ = log_decades(low, high);
    y_ticks_ = nice_ticks(top);
    axes(axis);
    for (const auto& strategy : strategies) {
      auto it = series.find(strategy);
      if (it == series.end()) continue;
      auto& points = it->second;
      std::ranges::sort(points, {}, &Point::x);
      const auto colour = colour_of(strategy);
      std::string coords;
      for (const auto& p : points) {
        if (!coords.empty()) coords += ' ';
        coords += fmt::format("{:.1f},{:.1f}", px(p.x), py(p.y));
      }
      out_ += fmt::format(
          "<polyline class=\"series\" data-strategy=\"{}\" points=\"{}\" fill=\"none\" stroke=\"{}\" "
          "stroke-width=\"2\"/>\n",
          xml_escape(strategy), coords, colour);
      for (const auto& p : points) {
        out_ += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"{}\" fill=\"{}\"/>\n", px(p.x), py(p.y),
                            kDotRadius, colour);
      }
    }
    out_ += "</g>\n";
  }

 private:
  static double width() { return kPanelWidth - kLeft - kRight; }
  static double height() { return kPanelHeight - kTop - kBottom; }

  double px(double concurrency) const {
    const double lo = std::log10(decades_.front());
    const double hi = std::log10(decades_.back());
    return x0_ + (std::log10(concurrency) - lo) / (hi - lo) * width();
  }
  double py(double value) const { return y0_ + height() - value / y_ticks_.back() * height(); }

  void axes(std::string_view axis) {
    const double bottom = y0_ + height();
    // x: a labelled grid line per decade, short minor ticks at 2..9 x each decade.
    for (std::size_t i = 0; i < decades_.size(); ++i) {
      const double d = decades_[i];
      const double x = px(d);
      out_ += fmt::format(
          "<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\" stroke=\"#dddddd\"/>\n"
          "<line x1=\"{0:.1f}\" y1=\"{2:.1f}\" x2=\"{0:.1f}\" y2=\"{3:.1f}\" stroke=\"#444444\"/>\n"
          "<text class=\"tick\" x=\"{0:.1f}\" y=\"{4:.1f}\" text-anchor=\"middle\">{5}</text>\n",
          x, y0_, bottom, bottom + kTickLength, bottom + 19, tick_label(d));
      if (i + 1 == decades_.size()) break;
      for (int m = 2; m <= kMinorTicksPerDecade; ++m) {
        const double xm = px(d * m);
        out_ += fmt::format(
            "<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\" stroke=\"#999999\"/>\n", xm,
            bottom, bottom + kTickLength / 2);
      }
    }
    out_ += fmt::format(
        "<text class=\"axis\" x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">concurrency (log "
        "scale)</text>\n",
        x0_ + width() / 2, bottom + 42);
    // y: a labelled grid line per tick.
    for (double v : y_ticks_) {
      const double y = py(v);
      out_ += fmt::format(
          "<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{2:.1f}\" y2=\"{1:.1f}\" stroke=\"#dddddd\"/>\n"
          "<line x1=\"{3:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" y2=\"{1:.1f}\" stroke=\"#444444\"/>\n"
          "<text class=\"tick\" x=\"{4:.1f}\" y=\"{5:.1f}\" text-anchor=\"end\">{6}</text>\n",
          x0_, y, x0_ + width(), x0_ - kTickLength, x0_ - 8, y + 4, tick_label(v));
    }
    const double cx = x0_ - 60;
    const double cy = y0_ + height() / 2;
    out_ += fmt::format(
        "<text class=\"axis\" x=\"{0:.1f}\" y=\"{1:.1f}\" text-anchor=\"middle\" transform=\"rotate(-90 "
        "{0:.1f} "
        "{1:.1f})\">{2}</text>\n",
        cx, cy, xml_escape(axis));
  }

  std::string& out_;
  double x0_;
  double y0_;
  std::vector<double> decades_;
  std::vector<double> y_ticks_;
};

}  // namespace

std::vector<double> log_decades(double low, double high) {
  int lo = static_cast<int>(std::floor(std::log10(low) + 1e-9));
  int hi = static_cast<int>(std::ceil(std::log10(high) - 1e-9));
  if (hi <= lo) hi = lo + 1;
  std::vector<double> out;
  for (int k = lo; k <= hi; ++k) out.push_back(std::pow(10.0, k));
  return out;
}

std::vector<double> nice_ticks(double high) {
  if (!(high > 0)) return {0, 1};
  const double raw = high / kTargetYTicks;
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  double step = magnitude * 10;
  for (double f : {1.0, 2.0, 2.5, 5.0, 10.0}) {
    if (f * magnitude >= raw) {
      step = f * magnitude;
      break;
    }
  }
  std::vector<double> out;
  for (int i = 0;; ++i) {
    out.push_back(step * i);
    if (step * i >= high * (1 - 1e-9)) break;
  }
  return out;
}

std::string tick_label(double value) {
  if (value >= kMillion) return fmt::format("{:g}M", value / kMillion);
  if (value >= kThousand) return fmt::format("{:g}k", value / kThousand);
  return fmt::format("{:g}", value);
}

std::string xml_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string render_svg(std::span<const Row> rows) {
  const auto profiles = first_appearance<std::string>(rows, [](const Row& r) { return r.profile; });
  const auto strategies = first_appearance<std::string>(rows, [](const Row& r) { return r.strategy; });
  const Metric metrics[] = {
      {"files/s", "files/s", [](const Row& r) { return r.files_per_s(); }},
      {"peak memory (MiB)", "peak memory MiB", [](const Row& r) { return r.peak_rss_mib(); }},
  };
  const double width = 2 * kPanelWidth + kLegendWidth + kMargin;
  const double height =
      kTitleHeight + std::max<double>(1, static_cast<double>(profiles.size())) * kPanelHeight + kMargin;

  std::string out;
  out += fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0:.0f}\" height=\"{1:.0f}\" viewBox=\"0 0 {0:.0f} "
      "{1:.0f}\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"12\">\n"
      "<style>.title{{font-size:14px;font-weight:bold}} .axis{{font-size:12px}} "
      ".tick{{font-size:11px}}</style>\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n"
      "<text x=\"{2:.1f}\" y=\"28\" font-size=\"18\" font-weight=\"bold\">fetchd bench: strategies by "
      "concurrency</text>\n",
      width, height, kMargin + kLeft);
  if (profiles.empty()) {
    out += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" fill=\"#777777\">no rows</text>\n", kMargin + kLeft,
                       kTitleHeight + kPanelHeight / 2);
  }
  for (std::size_t p = 0; p < profiles.size(); ++p) {
    std::vector<Row> profile_rows;
    std::ranges::copy_if(rows, std::back_inserter(profile_rows),
                         [&](const Row& r) { return r.profile == profiles[p]; });
    const double y = kTitleHeight + static_cast<double>(p) * kPanelHeight;
    for (std::size_t m = 0; m < std::size(metrics); ++m) {
      Panel panel(out, static_cast<double>(m) * kPanelWidth, y);
      panel.draw(fmt::format("{}: {}", profiles[p], metrics[m].title), metrics[m].axis, profile_rows,
                 strategies, metrics[m]);
    }
  }

  // The legend: every strategy in the rows, and whether any of its rows could be drawn.
  const double lx = 2 * kPanelWidth + kMargin;
  double ly = kTitleHeight + kTop;
  out += fmt::format(
      "<g class=\"legend\">\n<text class=\"title\" x=\"{:.1f}\" y=\"{:.1f}\">strategy</text>\n", lx, ly - 8);
  for (const auto& strategy : strategies) {
    const bool any =
        std::ranges::any_of(rows, [&](const Row& r) { return r.strategy == strategy && drawn(r); });
    const auto colour = any ? colour_of(strategy) : kFallbackColour;
    out += fmt::format(
        "<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{2:.1f}\" y2=\"{1:.1f}\" stroke=\"{3}\" "
        "stroke-width=\"2\"/>\n"
        "<circle cx=\"{4:.1f}\" cy=\"{1:.1f}\" r=\"{5}\" fill=\"{3}\"/>\n"
        "<text x=\"{6:.1f}\" y=\"{7:.1f}\">{8}{9}</text>\n",
        lx, ly + 6, lx + 28, colour, lx + 14, kDotRadius, lx + 36, ly + 10, xml_escape(strategy),
        any ? "" : " (not measured)");
    ly += kLegendRow;
  }
  out += fmt::format(
      "<text x=\"{0:.1f}\" y=\"{1:.1f}\" fill=\"#555555\" font-size=\"11\">Rows refused or with "
      "failures</text>\n"
      "<text x=\"{0:.1f}\" y=\"{2:.1f}\" fill=\"#555555\" font-size=\"11\">are left out. Memory: process "
      "pools</text>\n"
      "<text x=\"{0:.1f}\" y=\"{3:.1f}\" fill=\"#555555\" font-size=\"11\">sum RSS over their process "
      "tree.</text>\n"
      "</g>\n</svg>\n",
      lx, ly + 14, ly + 29, ly + 44);
  return out;
}

}  // namespace fetchd::bench
