// RouteTable: which function serves a method and path. Immutable after build(); shared by all
// workers (shared_ptr<const>), replaced as a whole on reload.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/error.h"
#include "runtime/function_bundle.h"

namespace flux::gateway {

struct RouteSpec {
  std::string method;  // GET, POST, PUT, PATCH, DELETE or ANY
  std::string path;    // "/users/:id"
  std::shared_ptr<const runtime::FunctionBundle> bundle;
};

class RouteTable {
 public:
  struct Match {
    enum class Outcome { kFound, kNotFound, kMethodNotAllowed };
    Outcome outcome = Outcome::kNotFound;
    const RouteSpec* route = nullptr;
    std::vector<std::pair<std::string, std::string>> params;
    std::string allowed;  // for 405: "GET, POST"
  };

  // Rejects malformed paths and duplicate method+path pairs with an error naming them.
  static Result<RouteTable> build(std::vector<RouteSpec> routes);

  // HEAD is served by a GET route.
  Match match(std::string_view method, std::string_view path) const;
  const std::vector<RouteSpec>& routes() const { return routes_; }

 private:
  struct Compiled {
    std::vector<std::string> segments;  // ":id" marks a parameter
    int static_count = 0;
  };
  std::vector<RouteSpec> routes_;   // most specific first
  std::vector<Compiled> compiled_;  // parallel to routes_
};

}  // namespace flux::gateway
