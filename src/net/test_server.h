// Tests' HttpServer: one worker on a free loopback port, the handler made by the factory.
#pragma once

#include <gtest/gtest.h>

#include <memory>

#include "net/http_server.h"

namespace flux::net::testing {

inline std::unique_ptr<HttpServer> startTestServer(HttpServer::HandlerFactory factory) {
  ServerOptions options;
  options.port = 0;
  options.workers = 1;
  auto server = HttpServer::start(options, std::move(factory));
  EXPECT_TRUE(server) << server.error().message;
  return server ? std::move(*server) : nullptr;
}

}  // namespace flux::net::testing
