// SPDX-License-Identifier: Apache-2.0
#pragma once
// `fetchd bench --plot FILE.svg`: the rows as a small SVG chart, written here without any library. One line
// of panels per profile, two panels each: files/s and peak memory (MiB) against concurrency on a log-scale x
// axis, one polyline (with a dot per point) per strategy, and a legend. Only rows that ran without failures
// are drawn. Pure functions.

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fetchd/bench/report.hpp"

namespace fetchd::bench {

// Decades covering [low, high] for a log axis: {1, 10, 100} for 4..80. Both > 0; at least two ticks.
std::vector<double> log_decades(double low, double high);

// 0 and about five "nice" steps (1, 2, 2.5 or 5 x 10^k) up to at least `high`: {0, 20, 40, 60, 80, 100} for
// 93.
std::vector<double> nice_ticks(double high);

// "10", "1000", "10k", "1.5M" for tick labels.
std::string tick_label(double value);

// Escapes &, <, >, " and ' for text and attribute values.
std::string xml_escape(std::string_view text);

// The whole SVG document for `rows` (any mix of profiles and strategies; profiles and strategies keep the
// order in which they first appear).
std::string render_svg(std::span<const Row> rows);

}  // namespace fetchd::bench
