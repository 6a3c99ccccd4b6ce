// AdminApi: the HTTP API under /_flux/ that the CLI talks to. Every call needs the admin
// token (Authorization: Bearer <token>); without it, 401 and nothing else. One instance per
// worker thread, with its own small PostgreSQL pool; handlers never block the worker.
//
//   GET /_flux/state/history?table=users&id=42[&limit=N]
//   GET /_flux/state/blame?table=users&id=42
//   GET /_flux/records/<id, prefix, req:handle or handle>   a record and its mutations
//   GET /_flux/records?since=&after=&limit=&fn=&status=&errors_only=&path=&kind=&method=
//   GET /_flux/records/stream?since=&fn=&status=&errors_only=&path=&kind=&method=
//       Server-Sent Events: the past records since `since`, then live ones (record_stream.h)
#pragma once

#include <boost/asio/io_context.hpp>
#include <memory>
#include <string>

#include "admin/record_stream.h"
#include "data/pg_pool.h"
#include "net/http_message.h"

namespace flux::admin {

class AdminApi final : public net::RequestHandler {
 public:
  // `feed`: the process's RecordFeed, which must outlive this object; without one (recording
  // off) the stream endpoint answers 503.
  AdminApi(boost::asio::io_context& loop, std::string token, data::PoolOptions database,
           RecordFeed* feed = nullptr, RecordStreamOptions stream_options = {});
  ~AdminApi() override;

  // Takes requests whose path starts with /_flux/.
  void handle(net::HttpRequest request, net::Responder respond) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// True when `path` belongs to the admin API.
bool isAdminPath(std::string_view path);

}  // namespace flux::admin
