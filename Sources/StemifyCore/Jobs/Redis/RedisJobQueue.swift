import Foundation
public import Logging
import Synchronization

/// The shared job queue on Redis, selected by a `redis://[user:password@]host:port/db` queue URL.
///
/// Each job is a hash; three sorted sets index it: `queued` by creation time, `running` by
/// lease end, `finished` by finish time. Every change that reads and writes runs as one Lua
/// script, which Redis executes atomically: a claim takes the oldest of the queued jobs and of
/// the running ones whose lease ran out plus a backoff doubling per attempt (their worker
/// vanished), so no two workers get the same job and a dead worker's job is taken over, as
/// `SELECT … FOR UPDATE SKIP LOCKED` does in PostgreSQL. Times come from Redis's clock (`TIME`),
/// so machines whose clocks disagree still agree on leases. Idle workers block on
/// `XREAD` of a wake-up stream that `enqueue` and `release` append to: woken at once, no
/// polling. One Redis server (or a primary with replicas), not Redis Cluster: the scripts
/// touch keys they derive.
public final class RedisJobQueue: JobQueue {
    private let address: RedisAddress
    private let prefix: String
    private let logger: Logger
    private let pool: RedisPool
    private let wakeups = WakeUps()
    private let listener: Task<Void, Never>
    public let leaseSeconds: Double
    public let maxAttempts: Int
    /// Seconds added after an expired lease before the first retry; doubled per attempt.
    public let retryBackoff: Double

    /// Connects (within 15 s, or a ``ConfigurationError``) and starts listening for new jobs.
    /// `prefix` namespaces every key (tests use a fresh one each).
    public init(url: String, prefix: String = "stemify", leaseSeconds: Double = 60, maxAttempts: Int = 3, retryBackoff: Double = 5,
                logger: Logger) async throws {
        do {
            address = try RedisAddress(url: url)
        } catch {
            throw ConfigurationError(key: "queue_url", message: "expected redis://[user:password@]host:port/db (\(error))")
        }
        self.prefix = prefix
        self.logger = logger
        self.leaseSeconds = leaseSeconds
        self.maxAttempts = maxAttempts
        self.retryBackoff = retryBackoff
        pool = RedisPool(address: address)
        do {
            _ = try await pool.run(["PING"])
        } catch {
            throw ConfigurationError(key: "queue_url", message: "no Redis answered at \(address.host):\(address.port) (\(error))")
        }
        let (address, stream, wakeups) = (address, "\(prefix):wake", wakeups)
        listener = Task {
            // One connection blocks on the wake-up stream; after a lost connection (a Redis
            // restart) it connects again, and workers fall back to their timeouts meanwhile.
            while !Task.isCancelled {
                do {
                    let connection = try await RedisConnection.connect(address)
                    defer { connection.close() }
                    var last = "$"
                    while !Task.isCancelled {
                        let reply = try await connection.run(["XREAD", "BLOCK", "5000", "STREAMS", stream, last])
                        guard !reply.isNull else { continue }
                        if let id = reply.elements.first?.elements.last?.elements.last?.elements.first?.string { last = id }
                        wakeups.wakeAll()
                    }
                } catch {
                    try? await Task.sleep(for: .seconds(1))
                }
            }
        }
    }

    public func shutdown() {
        listener.cancel()
        pool.close()
    }

    deinit { shutdown() }

    // MARK: - Scripts

    /// Helpers every script starts with: Redis's clock, exact numbers as text, key names.
    private static let prelude = """
        local P = ARGV[1]
        local function now() local t = redis.call('TIME'); return tonumber(t[1]) + tonumber(t[2]) / 1000000 end
        local function num(x) return string.format('%.17g', x) end
        local function key(id) return P .. ':job:' .. id end
        local RUNNING = {downloading = true, decoding = true, separating = true, encoding = true}
        local function finish(id, t)
          redis.call('ZREM', P .. ':queued', id)
          redis.call('ZREM', P .. ':running', id)
          redis.call('ZADD', P .. ':finished', num(t), id)
        end
        local function forget(id)
          local k = key(id)
          local row = redis.call('HGETALL', k)
          if #row == 0 then return nil end
          local dedupe = redis.call('HGET', k, 'dedupe_key')
          if dedupe then redis.call('SREM', P .. ':dedupe:' .. dedupe, id) end
          redis.call('DEL', k)
          redis.call('ZREM', P .. ':queued', id)
          redis.call('ZREM', P .. ':running', id)
          redis.call('ZREM', P .. ':finished', id)
          return row
        end

        """

    /// ARGV: prefix, id, created at, then the hash's field/value pairs. The hash, its index
    /// entry and the wake-up in one step.
    private static let enqueue = prelude + """
        local k = key(ARGV[2])
        local fields = {}
        for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end
        redis.call('HSET', k, unpack(fields))
        redis.call('ZADD', P .. ':queued', ARGV[3], ARGV[2])
        redis.call('XADD', P .. ':wake', 'MAXLEN', '~', '1000', '*', 'job', ARGV[2])
        return 1
        """

    /// ARGV: prefix, worker, lease, max attempts, backoff, the interrupted error code.
    private static let claim = prelude + """
        local worker, lease, maxAttempts, backoff = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
        local t = now()
        local best, bestCreated = nil, nil
        local head = redis.call('ZRANGE', P .. ':queued', 0, 0, 'WITHSCORES')
        if #head > 0 then best, bestCreated = head[1], tonumber(head[2]) end
        for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. ':running', '-inf', num(t))) do
          local h = redis.call('HMGET', key(id), 'lease_until', 'attempts', 'created_at')
          local attempts = tonumber(h[2]) or 0
          local leaseEnd = tonumber(h[1])
          if leaseEnd and leaseEnd + backoff * 2 ^ math.max(attempts - 1, 0) < t then
            local created = tonumber(h[3])
            if bestCreated == nil or created < bestCreated then best, bestCreated = id, created end
          end
        end
        if best == nil then return nil end
        local k = key(best)
        local attempts = tonumber(redis.call('HGET', k, 'attempts')) or 0
        if attempts >= maxAttempts then
          redis.call('HSET', k, 'status', 'failed', 'error_code', ARGV[6],
                     'error_message', 'the job was interrupted ' .. attempts .. ' times', 'finished_at', num(t))
          redis.call('HDEL', k, 'worker', 'eta', 'lease_until')
          finish(best, t)
          return {'failed', best}
        end
        local first = redis.call('HGET', k, 'input_kind') == 'youtube' and 'downloading' or 'decoding'
        redis.call('HSET', k, 'status', first, 'worker', worker, 'lease_until', num(t + lease), 'attempts', attempts + 1, 'progress', '0')
        if redis.call('HEXISTS', k, 'started_at') == 0 then redis.call('HSET', k, 'started_at', num(t)) end
        redis.call('ZREM', P .. ':queued', best)
        redis.call('ZADD', P .. ':running', num(t + lease), best)
        return redis.call('HGETALL', k)
        """

    /// ARGV: prefix, id, worker, lease.
    private static let heartbeat = prelude + """
        local k = key(ARGV[2])
        local h = redis.call('HMGET', k, 'worker', 'status')
        if h[1] ~= ARGV[3] or not RUNNING[h[2]] then return 0 end
        local until_ = now() + tonumber(ARGV[4])
        redis.call('HSET', k, 'lease_until', num(until_))
        redis.call('ZADD', P .. ':running', num(until_), ARGV[2])
        return 1
        """

    /// ARGV: prefix, id, worker, status, progress, eta ('' for none).
    private static let update = prelude + """
        local k = key(ARGV[2])
        if redis.call('HGET', k, 'worker') ~= ARGV[3] then return 0 end
        local progress = math.max(tonumber(redis.call('HGET', k, 'progress')) or 0, tonumber(ARGV[5]))
        redis.call('HSET', k, 'status', ARGV[4], 'progress', num(progress))
        if ARGV[6] == '' then redis.call('HDEL', k, 'eta') else redis.call('HSET', k, 'eta', ARGV[6]) end
        return 1
        """

    /// ARGV: prefix, id, worker, stems JSON, metrics JSON.
    private static let complete = prelude + """
        local k = key(ARGV[2])
        if redis.call('HGET', k, 'worker') ~= ARGV[3] then return 0 end
        local t = now()
        redis.call('HSET', k, 'status', 'done', 'progress', '1', 'eta', '0', 'stems', ARGV[4], 'metrics', ARGV[5], 'finished_at', num(t))
        redis.call('HDEL', k, 'worker')
        finish(ARGV[2], t)
        return 1
        """

    /// ARGV: prefix, id, worker ('' for any), code, message.
    private static let fail = prelude + """
        local k = key(ARGV[2])
        if redis.call('EXISTS', k) == 0 then return 0 end
        if ARGV[3] ~= '' and redis.call('HGET', k, 'worker') ~= ARGV[3] then return 0 end
        local t = now()
        redis.call('HSET', k, 'status', 'failed', 'error_code', ARGV[4], 'error_message', ARGV[5], 'finished_at', num(t))
        redis.call('HDEL', k, 'worker', 'eta')
        finish(ARGV[2], t)
        return 1
        """

    /// ARGV: prefix, id, worker.
    private static let release = prelude + """
        local k = key(ARGV[2])
        if redis.call('HGET', k, 'worker') ~= ARGV[3] then return 0 end
        local attempts = tonumber(redis.call('HGET', k, 'attempts')) or 0
        redis.call('HSET', k, 'status', 'queued', 'attempts', math.max(attempts - 1, 0))
        redis.call('HDEL', k, 'worker', 'lease_until')
        redis.call('ZREM', P .. ':running', ARGV[2])
        redis.call('ZADD', P .. ':queued', redis.call('HGET', k, 'created_at'), ARGV[2])
        redis.call('XADD', P .. ':wake', 'MAXLEN', '~', '1000', '*', 'job', ARGV[2])
        return 1
        """

    /// ARGV: prefix, id.
    private static let cancel = prelude + "return forget(ARGV[2])"

    /// ARGV: prefix, id. The job as it is after, or nil when missing or finished.
    private static let markCancelled = prelude + """
        local k = key(ARGV[2])
        local status = redis.call('HGET', k, 'status')
        if not status or status == 'done' or status == 'failed' or status == 'cancelled' then return nil end
        local t = now()
        redis.call('HSET', k, 'status', 'cancelled', 'finished_at', num(t))
        redis.call('HDEL', k, 'eta', 'worker', 'lease_until')
        finish(ARGV[2], t)
        return redis.call('HGETALL', k)
        """

    /// ARGV: prefix, id.
    private static let position = prelude + """
        local h = redis.call('HMGET', key(ARGV[2]), 'status', 'created_at')
        if h[1] ~= 'queued' then return nil end
        return redis.call('ZCOUNT', P .. ':queued', '-inf', '(' .. h[2])
        """

    /// ARGV: prefix. A flat list: status, count, status, count …
    private static let counts = prelude + """
        local n = {queued = redis.call('ZCARD', P .. ':queued')}
        for _, set in ipairs({'running', 'finished'}) do
          for _, id in ipairs(redis.call('ZRANGE', P .. ':' .. set, 0, -1)) do
            local s = redis.call('HGET', key(id), 'status')
            if s then n[s] = (n[s] or 0) + 1 end
          end
        end
        local out = {}
        for s, c in pairs(n) do if c > 0 then table.insert(out, s); table.insert(out, c) end end
        return out
        """

    /// ARGV: prefix, dedupe key.
    private static let finishedJob = prelude + """
        local best, bestAt = nil, nil
        for _, id in ipairs(redis.call('SMEMBERS', P .. ':dedupe:' .. ARGV[2])) do
          local h = redis.call('HMGET', key(id), 'status', 'finished_at')
          if h[1] == 'done' and (bestAt == nil or tonumber(h[2]) > bestAt) then best, bestAt = id, tonumber(h[2]) end
        end
        if best == nil then return nil end
        return redis.call('HGETALL', key(best))
        """

    /// ARGV: prefix, id, dedupe key.
    private static let setDedupeKey = prelude + """
        local k = key(ARGV[2])
        if redis.call('EXISTS', k) == 0 then return 0 end
        local old = redis.call('HGET', k, 'dedupe_key')
        if old then redis.call('SREM', P .. ':dedupe:' .. old, ARGV[2]) end
        redis.call('HSET', k, 'dedupe_key', ARGV[3])
        redis.call('SADD', P .. ':dedupe:' .. ARGV[3], ARGV[2])
        return 1
        """

    /// ARGV: prefix, client, count, period, limit. Returns {allowed (0/1), retry after}.
    private static let recordSubmission = prelude + """
        local k = P .. ':submissions:' .. ARGV[2]
        local count, period, limit = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
        local t = now()
        redis.call('ZREMRANGEBYSCORE', k, '-inf', '(' .. num(t - period))
        local n = redis.call('ZCARD', k)
        if limit > 0 and n + count > limit then
          local freeing = math.min(n + count - limit, n) - 1
          if freeing < 0 then return {0, num(period)} end
          local entry = redis.call('ZRANGE', k, freeing, freeing, 'WITHSCORES')
          return {0, num(math.max(1, tonumber(entry[2]) + period - t))}
        end
        for _ = 1, count do
          redis.call('ZADD', k, num(t), num(t) .. ':' .. redis.call('INCR', P .. ':submission-seq'))
        end
        redis.call('PEXPIRE', k, math.ceil(period * 1000) + 1000)
        return {1, '0'}
        """

    /// ARGV: prefix, id, fingerprint, ttl (ms). {"claimed"} or {"found", fingerprint, status, body, location}.
    private static let claimIdempotency = prelude + """
        local k = P .. ':idempotency:' .. ARGV[2]
        if redis.call('HSETNX', k, 'fingerprint', ARGV[3]) == 1 then
          redis.call('PEXPIRE', k, ARGV[4])
          return {'claimed'}
        end
        local h = redis.call('HMGET', k, 'fingerprint', 'status', 'body', 'location')
        return {'found', h[1], h[2] or '', h[3] or '', h[4] or ''}
        """

    /// ARGV: prefix, limit, lease. Due deliveries' records, each put off by the lease.
    private static let claimDeliveries = prelude + """
        local t = now()
        local ids = redis.call('ZRANGEBYSCORE', P .. ':webhooks:due', '-inf', num(t), 'LIMIT', 0, tonumber(ARGV[2]))
        local out = {}
        for _, id in ipairs(ids) do
          local record = redis.call('HGET', P .. ':webhooks', id)
          if record then
            redis.call('ZADD', P .. ':webhooks:due', num(t + tonumber(ARGV[3])), id)
            out[#out + 1] = record
          else
            redis.call('ZREM', P .. ':webhooks:due', id)
          end
        end
        return out
        """

    /// ARGV: prefix, client, period. The window's scores, oldest first, then the server's time.
    private static let submissionWindow = prelude + """
        local k = P .. ':submissions:' .. ARGV[2]
        local t = now()
        local scores = redis.call('ZRANGEBYSCORE', k, num(t - tonumber(ARGV[3])), '+inf', 'WITHSCORES')
        local out = {}
        for i = 2, #scores, 2 do out[#out + 1] = scores[i] end
        out[#out + 1] = num(t)
        return out
        """

    /// ARGV: prefix, id, client, created at, songs JSON.
    private static let addBatch = prelude + """
        redis.call('HSET', P .. ':batch:' .. ARGV[2], 'id', ARGV[2], 'client', ARGV[3], 'created_at', ARGV[4], 'songs', ARGV[5])
        redis.call('ZADD', P .. ':batches', ARGV[4], ARGV[2])
        return 1
        """

    /// ARGV: prefix, time. The hashes of batches created before it.
    private static let batchesBefore = prelude + """
        local out = {}
        for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. ':batches', '-inf', '(' .. ARGV[2])) do
          table.insert(out, redis.call('HGETALL', P .. ':batch:' .. id))
        end
        return out
        """

    /// ARGV: prefix, id.
    private static let removeBatch = prelude + """
        redis.call('DEL', P .. ':batch:' .. ARGV[2])
        redis.call('ZREM', P .. ':batches', ARGV[2])
        return 1
        """

    /// ARGV: prefix, age. The rows of the jobs removed.
    private static let expire = prelude + """
        local out = {}
        for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. ':finished', '-inf', '(' .. num(now() - tonumber(ARGV[2])))) do
          local row = forget(id)
          if row then table.insert(out, row) end
        end
        return out
        """

    private func script(_ source: String, _ arguments: [String]) async throws -> RESPValue {
        try await pool.run(["EVAL", source, "0", prefix] + arguments)
    }

    // MARK: - JobQueue

    public func enqueue(_ job: Job) async throws {
        let r = try JobRow(job)
        var fields = ["id", r.id, "status", r.status, "progress", "0", "options", r.options, "input_kind", r.inputKind,
                      "input_value", r.inputValue, "client", r.client, "created_at", Self.text(r.createdAt), "attempts", "0"]
        if let name = r.inputName { fields += ["input_name", name] }
        _ = try await script(Self.enqueue, [r.id, Self.text(r.createdAt)] + fields)
        // The listings: per owner and all; a job gone from its hash is dropped from them when met.
        _ = try await pool.run(["ZADD", listing(owner: r.client), Self.text(r.createdAt), r.id])
        _ = try await pool.run(["ZADD", listing(owner: nil), Self.text(r.createdAt), r.id])
    }

    private func listing(owner: String?) -> String { owner.map { "\(prefix):owner:\($0)" } ?? "\(prefix):listed" }

    public func jobs(owner: String?, statuses: [JobStatus]?, after cursor: ListCursor?, limit: Int) async throws -> [Job] {
        let key = listing(owner: owner)
        var out: [Job] = []
        var offset = 0
        let page = max(limit, 50)
        while out.count < limit {
            // Inclusive of the cursor's time: ties are told apart by id below.
            let ids = try await pool.run(["ZREVRANGEBYSCORE", key, cursor.map { Self.text($0.createdAt) } ?? "+inf", "-inf",
                                          "LIMIT", "\(offset)", "\(page)"]).elements.compactMap(\.string)
            if ids.isEmpty { break }
            offset += ids.count
            for id in ids {
                guard let job = try await job(id: id) else {
                    _ = try await pool.run(["ZREM", key, id])
                    offset -= 1
                    continue
                }
                if let cursor, !cursor.precedes(createdAt: job.createdAt.timeIntervalSince1970, id: job.id) { continue }
                if let statuses, !statuses.contains(job.status) { continue }
                out.append(job)
            }
        }
        // Same-time jobs in id order, as the SQL backends give them.
        return Array(out.sorted { ($0.createdAt, $0.id) > ($1.createdAt, $1.id) }.prefix(limit))
    }

    public func job(id: String) async throws -> Job? {
        try Self.row(try await pool.run(["HGETALL", "\(prefix):job:\(id)"]))?.job()
    }

    public func claim(worker: String) async throws -> Job? {
        let reply = try await script(Self.claim, [worker, Self.text(leaseSeconds), String(maxAttempts), Self.text(retryBackoff),
                                                  ErrorCode.internalError.rawValue])
        let flat = reply.elements.compactMap(\.string)
        if flat.count == 2, flat[0] == "failed" {
            // Failed here (too many interruptions), not by a worker: announced here.
            if let job = try await job(id: flat[1]), let delivery = WebhookDelivery(for: job) { try await addDelivery(delivery) }
            return nil
        }
        return try Self.row(reply)?.job()
    }

    public func heartbeat(id: String, worker: String) async throws -> Bool {
        try await script(Self.heartbeat, [id, worker, Self.text(leaseSeconds)]).int == 1
    }

    public func update(id: String, worker: String, status: JobStatus, progress: Double, eta: Double?) async throws {
        _ = try await script(Self.update, [id, worker, status.rawValue, Self.text(progress), eta.map(Self.text) ?? ""])
    }

    public func complete(id: String, worker: String, stems: [StemFile], metrics: JobMetrics) async throws {
        let stemsJSON = String(decoding: try JSONEncoder().encode(stems), as: UTF8.self)
        let metricsJSON = String(decoding: try JSONEncoder().encode(metrics), as: UTF8.self)
        _ = try await script(Self.complete, [id, worker, stemsJSON, metricsJSON])
    }

    public func fail(id: String, worker: String?, code: ErrorCode, message: String) async throws {
        _ = try await script(Self.fail, [id, worker ?? "", code.rawValue, message])
    }

    public func release(id: String, worker: String) async throws {
        _ = try await script(Self.release, [id, worker])
    }

    public func cancel(id: String) async throws -> Job? {
        let job = try Self.row(try await script(Self.cancel, [id]))?.job()
        if let job { try await unlist(job) }
        return job
    }

    private func unlist(_ job: Job) async throws {
        _ = try await pool.run(["ZREM", listing(owner: job.owner), job.id])
        _ = try await pool.run(["ZREM", listing(owner: nil), job.id])
    }

    public func markCancelled(id: String) async throws -> Job? {
        try Self.row(try await script(Self.markCancelled, [id]))?.job()
    }

    public func position(id: String) async throws -> Int? {
        let reply = try await script(Self.position, [id])
        return reply.isNull ? nil : reply.int
    }

    public func counts() async throws -> [JobStatus: Int] {
        let flat = try await script(Self.counts, []).elements
        var out: [JobStatus: Int] = [:]
        for i in stride(from: 0, to: flat.count - 1, by: 2) {
            if let status = flat[i].string.flatMap(JobStatus.init(rawValue:)), let n = flat[i + 1].int { out[status] = n }
        }
        return out
    }

    public func finishedJob(dedupeKey: String) async throws -> Job? {
        try Self.row(try await script(Self.finishedJob, [dedupeKey]))?.job()
    }

    public func setDedupeKey(id: String, key: String) async throws {
        _ = try await script(Self.setDedupeKey, [id, key])
    }

    public func recordSubmission(client: String, count: Int, period: Double, limit: Int) async throws -> (allowed: Bool, retryAfter: Double) {
        let reply = try await script(Self.recordSubmission, [client, String(count), Self.text(period), String(limit)]).elements
        return (reply.first?.int == 1, reply.last?.string.flatMap(Double.init) ?? 0)
    }

    public func claimIdempotencyKey(id: String, fingerprint: String, ttl: Double) async throws -> IdempotencyClaim {
        let reply = try await script(Self.claimIdempotency, [id, fingerprint, "\(Int(ttl * 1000))"]).elements.map { $0.string ?? "" }
        guard reply.first == "found", reply.count == 5 else { return .claimed }
        return JobRow.claim(stored: reply[1], status: Int(reply[2]), body: reply[3], location: reply[4], asked: fingerprint)
    }

    public func completeIdempotencyKey(id: String, response: StoredResponse) async throws {
        _ = try await pool.run(["HSET", "\(prefix):idempotency:\(id)", "status", "\(response.status)", "body", response.body,
                                "location", response.location ?? ""])
    }

    public func releaseIdempotencyKey(id: String) async throws {
        let key = "\(prefix):idempotency:\(id)"
        if try await pool.run(["HGET", key, "status"]).string == nil { _ = try await pool.run(["DEL", key]) }
    }

    public func addDelivery(_ delivery: WebhookDelivery) async throws {
        let added = try await pool.run(["HSETNX", "\(prefix):webhooks", delivery.id, try delivery.encoded()]).int
        guard added == 1 else { return }
        _ = try await pool.run(["ZADD", "\(prefix):webhooks:due", Self.text(delivery.nextAttemptAt), delivery.id])
        _ = try await pool.run(["RPUSH", "\(prefix):webhooks:job:\(delivery.jobID)", delivery.id])
        // The job's list goes with the retry windows; the records with their job (see expire).
        _ = try await pool.run(["EXPIRE", "\(prefix):webhooks:job:\(delivery.jobID)", "\(Int(2 * WebhookDelivery.retryWindow))"])
    }

    public func claimDueDeliveries(limit: Int, lease: Double) async throws -> [WebhookDelivery] {
        try await script(Self.claimDeliveries, ["\(limit)", Self.text(lease)]).elements.compactMap { $0.string }.map(WebhookDelivery.decode)
    }

    public func updateDelivery(_ delivery: WebhookDelivery) async throws {
        _ = try await pool.run(["HSET", "\(prefix):webhooks", delivery.id, try delivery.encoded()])
        if delivery.state == .pending {
            _ = try await pool.run(["ZADD", "\(prefix):webhooks:due", Self.text(delivery.nextAttemptAt), delivery.id])
        } else {
            _ = try await pool.run(["ZREM", "\(prefix):webhooks:due", delivery.id])
        }
    }

    public func deliveries(jobID: String) async throws -> [WebhookDelivery] {
        let ids = try await pool.run(["LRANGE", "\(prefix):webhooks:job:\(jobID)", "0", "-1"]).elements.compactMap(\.string)
        guard !ids.isEmpty else { return [] }
        return try await pool.run(["HMGET", "\(prefix):webhooks"] + ids).elements.compactMap(\.string).map(WebhookDelivery.decode)
    }

    public func submissionWindow(client: String, period: Double) async throws -> SubmissionWindow {
        let values = try await script(Self.submissionWindow, [client, Self.text(period)]).elements.compactMap { $0.string.flatMap(Double.init) }
        return SubmissionWindow(times: Array(values.dropLast()), now: values.last ?? Date().timeIntervalSince1970)
    }

    public func refundSubmissions(client: String, count: Int) async throws {
        guard count > 0 else { return }
        _ = try await pool.run(["ZPOPMAX", "\(prefix):submissions:\(client)", "\(count)"])
    }

    public func expire(olderThan age: Double) async throws -> [Job] {
        let expired = try await script(Self.expire, [Self.text(age)]).elements.compactMap { try Self.row($0)?.job() }
        for job in expired {
            try await unlist(job)
            let ids = try await pool.run(["LRANGE", "\(prefix):webhooks:job:\(job.id)", "0", "-1"]).elements.compactMap(\.string)
            if !ids.isEmpty {
                _ = try await pool.run(["HDEL", "\(prefix):webhooks"] + ids)
                _ = try await pool.run(["ZREM", "\(prefix):webhooks:due"] + ids)
                _ = try await pool.run(["DEL", "\(prefix):webhooks:job:\(job.id)"])
            }
        }
        return expired
    }

    public func addBatch(_ batch: Batch) async throws {
        _ = try await script(Self.addBatch, [batch.id, batch.owner, Self.text(batch.createdAt.timeIntervalSince1970),
                                             try batch.songsJSON()])
    }

    public func batch(id: String) async throws -> Batch? {
        try Self.batch(try await pool.run(["HGETALL", "\(prefix):batch:\(id)"]))
    }

    public func batches(createdBefore time: Double) async throws -> [Batch] {
        try await script(Self.batchesBefore, [Self.text(time)]).elements.compactMap { try Self.batch($0) }
    }

    public func batches(owner: String?, after cursor: ListCursor?, limit: Int) async throws -> [Batch] {
        var out: [Batch] = []
        var offset = 0
        let page = max(limit, 50)
        while out.count < limit {
            let ids = try await pool.run(["ZREVRANGEBYSCORE", "\(prefix):batches", cursor.map { Self.text($0.createdAt) } ?? "+inf", "-inf",
                                          "LIMIT", "\(offset)", "\(page)"]).elements.compactMap(\.string)
            if ids.isEmpty { break }
            offset += ids.count
            for id in ids {
                guard let batch = try await batch(id: id) else { continue }
                if let owner, batch.owner != owner { continue }
                if let cursor, !cursor.precedes(createdAt: batch.createdAt.timeIntervalSince1970, id: batch.id) { continue }
                out.append(batch)
            }
        }
        return Array(out.sorted { ($0.createdAt, $0.id) > ($1.createdAt, $1.id) }.prefix(limit))
    }

    public func removeBatch(id: String) async throws {
        _ = try await script(Self.removeBatch, [id])
    }

    public func waitForWork(timeout: Double) async {
        await wakeups.wait(timeout: timeout)
    }

    // MARK: - Rows

    /// Exact decimal text of a double (Lua reads it back to the same value).
    private static func text(_ x: Double) -> String { "\(x)" }

    /// `HGETALL`'s flat field/value list as a dictionary; nil for a missing key.
    private static func hash(_ reply: RESPValue) -> [String: String]? {
        let flat = reply.elements
        guard flat.count >= 2 else { return nil }
        var h: [String: String] = [:]
        for i in stride(from: 0, to: flat.count - 1, by: 2) {
            if let k = flat[i].string, let v = flat[i + 1].string { h[k] = v }
        }
        return h
    }

    /// A batch hash; nil for a missing batch.
    private static func batch(_ reply: RESPValue) throws -> Batch? {
        guard let h = hash(reply) else { return nil }
        guard let id = h["id"], let client = h["client"], let created = h["created_at"].flatMap(Double.init), let songs = h["songs"] else {
            throw StemifyError(.internalError, "a stored batch cannot be read", detail: "Redis batch hash with fields \(h.keys.sorted())")
        }
        return try Batch(id: id, client: client, createdAt: created, songs: songs)
    }

    /// A job hash as a row; nil for a missing job.
    private static func row(_ reply: RESPValue) throws -> JobRow? {
        guard let h = hash(reply) else { return nil }
        guard let id = h["id"], let status = h["status"], let options = h["options"], let kind = h["input_kind"],
              let value = h["input_value"], let client = h["client"], let created = h["created_at"].flatMap(Double.init) else {
            throw StemifyError(.internalError, "a stored job cannot be read", detail: "Redis job hash with fields \(h.keys.sorted())")
        }
        return JobRow(id: id, status: status, progress: h["progress"].flatMap(Double.init) ?? 0, eta: h["eta"].flatMap(Double.init),
                      options: options, inputKind: kind, inputValue: value, inputName: h["input_name"], client: client,
                      createdAt: created, startedAt: h["started_at"].flatMap(Double.init), finishedAt: h["finished_at"].flatMap(Double.init),
                      errorCode: h["error_code"], errorMessage: h["error_message"], stems: h["stems"], metrics: h["metrics"],
                      attempts: h["attempts"].flatMap(Int.init) ?? 0)
    }
}

/// A few connections shared by the queue's calls, opened on demand and replaced when they
/// break (a Redis restart), so one slow call does not hold up the others.
final class RedisPool: Sendable {
    private let address: RedisAddress
    private let idle = Mutex<[RedisConnection]>([])
    private static let keepIdle = 4

    init(address: RedisAddress) { self.address = address }

    func run(_ arguments: [String]) async throws -> RESPValue {
        let reused = idle.withLock { $0.popLast() }
        let connection: RedisConnection
        if let reused, reused.isOpen { connection = reused } else { connection = try await RedisConnection.connect(address) }
        do {
            let reply = try await connection.run(arguments)
            giveBack(connection)
            return reply
        } catch {
            // A command the server refused leaves the connection usable; anything else may not.
            if case RedisError.server = error { giveBack(connection) } else { connection.close() }
            throw error
        }
    }

    private func giveBack(_ connection: RedisConnection) {
        let kept = idle.withLock { list in
            guard list.count < Self.keepIdle else { return false }
            list.append(connection)
            return true
        }
        if !kept { connection.close() }
    }

    func close() {
        for c in idle.withLock({ list in defer { list = [] }; return list }) { c.close() }
    }
}
