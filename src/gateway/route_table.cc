#include "gateway/route_table.h"

#include <algorithm>
#include <numeric>

namespace flux::gateway {

namespace {

std::vector<std::string_view> splitPath(std::string_view path) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '/') {
      ++i;
      continue;
    }
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    out.push_back(path.substr(i, j - i));
    i = j;
  }
  return out;
}

// Percent-decodes a path segment for a parameter value; invalid escapes are kept as they are.
std::string decodeSegment(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

}  // namespace

Result<RouteTable> RouteTable::build(std::vector<RouteSpec> routes) {
  std::vector<Compiled> compiled;
  for (const RouteSpec& r : routes) {
    if (r.path.empty() || r.path[0] != '/') {
      return fail(ErrorCode::kInvalidArgument, "route '" + r.path + "' must start with '/'");
    }
    Compiled c;
    for (std::string_view seg : splitPath(r.path)) {
      if (seg == ":") {
        return fail(ErrorCode::kInvalidArgument, "route '" + r.path + "' has an unnamed parameter");
      }
      if (seg[0] != ':') ++c.static_count;
      c.segments.emplace_back(seg);
    }
    compiled.push_back(std::move(c));
  }
  for (size_t i = 0; i < routes.size(); ++i) {
    for (size_t j = i + 1; j < routes.size(); ++j) {
      if (routes[i].method == routes[j].method && compiled[i].segments == compiled[j].segments) {
        return fail(ErrorCode::kAlreadyExists, "functions '" + routes[i].bundle->name + "' and '" +
                                                   routes[j].bundle->name + "' both serve " +
                                                   routes[i].method + " " + routes[i].path);
      }
    }
  }
  // Most specific first: more static segments, then fewer segments, then a method over ANY.
  std::vector<size_t> order(routes.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (compiled[a].static_count != compiled[b].static_count) {
      return compiled[a].static_count > compiled[b].static_count;
    }
    return (routes[a].method != "ANY") > (routes[b].method != "ANY");
  });
  RouteTable table;
  for (size_t i : order) {
    table.routes_.push_back(std::move(routes[i]));
    table.compiled_.push_back(std::move(compiled[i]));
  }
  return table;
}

RouteTable::Match RouteTable::match(std::string_view method, std::string_view path) const {
  Match result;
  std::vector<std::string_view> parts = splitPath(path);
  for (size_t i = 0; i < routes_.size(); ++i) {
    const Compiled& c = compiled_[i];
    if (c.segments.size() != parts.size()) continue;
    bool ok = true;
    for (size_t k = 0; k < parts.size() && ok; ++k) {
      ok = c.segments[k][0] == ':' || c.segments[k] == parts[k];
    }
    if (!ok) continue;
    const std::string& m = routes_[i].method;
    if (m == "ANY" || m == method || (method == "HEAD" && m == "GET")) {
      result.outcome = Match::Outcome::kFound;
      result.route = &routes_[i];
      for (size_t k = 0; k < parts.size(); ++k) {
        if (c.segments[k][0] == ':') {
          result.params.emplace_back(c.segments[k].substr(1), decodeSegment(parts[k]));
        }
      }
      return result;
    }
    result.outcome = Match::Outcome::kMethodNotAllowed;
    if (result.allowed.find(m) == std::string::npos) {
      result.allowed += (result.allowed.empty() ? "" : ", ") + m;
    }
  }
  return result;
}

}  // namespace flux::gateway
