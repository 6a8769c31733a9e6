public import Foundation
public import Logging
public import StemifyEngine

/// Deployment settings of `stemify serve` and `stemify worker`.
///
/// Read from a YAML file (`--config`), then environment variables, then command-line flags, each
/// overriding the one before. Every key, variable and default is listed in
/// `docs/configuration.md`; ``load(file:environment:)`` refuses unknown keys and bad values with
/// a message naming the key.
public struct StemifyConfiguration: Sendable, Equatable {
    /// `host` / `STEMIFY_HOST`. The default is `127.0.0.1`.
    public var host = "127.0.0.1"
    /// `port` / `STEMIFY_PORT`. The default is 8080.
    public var port = 8080
    /// `data_dir` / `STEMIFY_DATA_DIR`: jobs database, uploads and stems. The default is `./stemify-data`.
    public var dataDirectory = "stemify-data"
    /// `model_path` / `DEMUCS_MODEL_PATH`: the model folder. The default is `DATA_DIR/models`.
    public var modelPath: String?
    /// `youtube_download_dir` / `YOUTUBE_DOWNLOAD_DIR`. The default is `DATA_DIR/youtube`.
    public var youtubeDownloadDirectory: String?
    /// `max_file_size` / `MAX_FILE_SIZE`, bytes. The default is 50 MB.
    public var maxFileSize = 50 * 1024 * 1024
    /// `max_duration` / `MAX_DURATION`, seconds of audio (uploads and videos). The default is 600.
    public var maxDurationSeconds = 600.0
    /// `rate_limit` / `RATE_LIMIT`: jobs per client per period; 0 disables. The default is 5.
    public var rateLimit = 5
    /// `rate_limit_period` / `RATE_LIMIT_PERIOD`, seconds. The default is 3600.
    public var rateLimitPeriodSeconds = 3600.0
    /// `trusted_proxies` / `TRUSTED_PROXIES` (comma-separated): peers whose X-Forwarded-For is believed.
    public var trustedProxies: [String] = []
    /// `cors_origins` / `STEMIFY_CORS_ORIGINS` (comma-separated `scheme://host[:port]`, or `*`):
    /// pages on other origins allowed to call the API from a browser. The default is none (the
    /// page this server serves is same-origin).
    public var corsOrigins: [String] = []
    /// `workers` / `STEMIFY_WORKERS`: in-process workers; 0 runs the API only. The default is 1.
    public var workers = 1
    /// `threads` / `STEMIFY_THREADS`: engine threads per worker. The default is all cores.
    public var threads = ProcessInfo.processInfo.activeProcessorCount
    /// `lanes` / `STEMIFY_LANES`: chunks of one song separated at once, each on a share of the
    /// threads (more lanes: faster, one chunk's activations more memory each); 0, the default,
    /// lets the engine choose (one per thread up to 24 s of audio in flight).
    public var lanes = 0
    /// `isa` / `STEMIFY_ISA`: the engine's vector kernels, `auto` (the default: the widest set
    /// this CPU runs), `avx512`, `avx2` or `portable`; forcing one lets both x86 paths be measured.
    public var instructionSet = InstructionSet.best
    /// `queue_url` / `STEMIFY_QUEUE_URL` (or `REDIS_URL` when that is unset): `sqlite:PATH`
    /// (default `sqlite:DATA_DIR/jobs.sqlite`), `postgres://user:password@host:port/database`, or
    /// `redis://[user:password@]host:port/db`.
    public var queueURL: String?
    /// `upload_expiry` / `STEMIFY_UPLOAD_EXPIRY`, seconds a resumable upload (`/api/uploads`) is
    /// kept after its last byte arrived. The default is 86400.
    public var uploadExpirySeconds = 86400.0
    /// `max_batch_size` / `STEMIFY_MAX_BATCH_SIZE`, songs in one `POST /api/batches`. The
    /// default is 20 (an album); each song is still held to `max_file_size` and `max_duration`.
    public var maxBatchSize = 20
    /// `result_ttl` / `RESULT_TTL`, seconds finished jobs and their stems are kept. The default is 86400.
    public var resultTTLSeconds = 86400.0
    /// `lease` / `STEMIFY_LEASE`, seconds a worker holds a job between heartbeats. The default is 60.
    public var leaseSeconds = 60.0
    /// `max_attempts`: claims of a job whose workers keep dying before it fails.
    public var maxAttempts = 3
    /// `retry_backoff`: seconds after an expired lease before a retry, doubled per attempt (PostgreSQL).
    public var retryBackoffSeconds = 5.0
    /// `checkpoint_interval`: seconds between separation checkpoints a takeover resumes from.
    public var checkpointInterval = 10.0
    /// `api_keys` / `STEMIFY_API_KEYS`: require an API key (`Authorization: Bearer sk_…`) on every
    /// `/api/` request; each key's quota replaces the per-address rate limit. The default is off:
    /// then whoever creates a job, batch or upload gets an owner token that alone reads it.
    public var apiKeys = false
    /// `keys_file` / `STEMIFY_KEYS_FILE`: where `stemify keys` keeps the keys (hashed). The
    /// default is `DATA_DIR/keys.json`; API processes on several machines share one file.
    public var keysFile: String?
    /// The keys file in effect.
    public var resolvedKeysFile: String { keysFile ?? URL(fileURLWithPath: dataDirectory).appendingPathComponent("keys.json").path }
    /// `webhook_allow_hosts` / `STEMIFY_WEBHOOK_ALLOW_HOSTS` (comma-separated host names or
    /// addresses): callback URLs allowed to reach these even when they are private or loopback.
    public var webhookAllowHosts: [String] = []
    /// `webhook_secret` / `STEMIFY_WEBHOOK_SECRET`: the HMAC-SHA256 key of `Stemify-Signature`.
    /// The default is a random secret kept in `DATA_DIR/webhook_secret` (share it, or set this,
    /// when API processes run on several machines).
    public var webhookSecret: String?
    /// `webhook_timeout` / `STEMIFY_WEBHOOK_TIMEOUT`, seconds a receiver has to answer. The default is 10.
    public var webhookTimeoutSeconds = 10.0
    /// `webhook_retry_base` / `STEMIFY_WEBHOOK_RETRY_BASE`, seconds before the first retry,
    /// tripled after each (at most an hour apart, for a day). The default is 10.
    public var webhookRetryBaseSeconds = 10.0
    /// `log_level` / `LOG_LEVEL`: trace, debug, info, notice, warning, error, critical. The default is info.
    public var logLevel = "info"
    /// `youtube_blocklist` / `YOUTUBE_BLOCKLIST` (comma-separated video ids).
    public var youtubeBlocklist: [String] = []
    /// `youtube_test_hosts` / `YOUTUBE_TEST_HOSTS`: extra hosts accepted as YouTube. Tests only.
    public var youtubeTestHosts: [String] = []
    /// `mp3_bitrate` / `MP3_BITRATE`, kbit/s. The default is 320.
    public var mp3Bitrate = 320
    /// `model_download` / `MODEL_DOWNLOAD`: fetch published models on first use. The default is true.
    public var modelDownload = true
    /// `model_hf_url` / `MODEL_HF_URL`: HuggingFace base. The default is `https://huggingface.co`.
    public var modelHuggingFaceURL = "https://huggingface.co"
    /// `model_legacy_url` / `MODEL_LEGACY_URL`: legacy base. The default is `https://dl.fbaipublicfiles.com/demucs`.
    public var modelLegacyURL = "https://dl.fbaipublicfiles.com/demucs"
    /// `model_mirror_url` / `MODEL_MIRROR_URL`: fetch RoFormer checkpoints and configurations
    /// from `URL/FILE` instead of their publishers (an offline mirror). The default is none.
    public var modelMirrorURL: String?

    /// `storage_url` / `STEMIFY_STORAGE_URL`: `s3://bucket/prefix` keeps uploads, stems and
    /// checkpoints in an S3-compatible bucket (API and workers then share no folder). The
    /// default is none: the `data_dir` folder.
    public var storageURL: String?
    /// `storage_endpoint` / `AWS_ENDPOINT_URL`: a custom S3 endpoint (MinIO, R2, moto), addressed
    /// path-style. The default is AWS by region.
    public var storageEndpoint: String?
    /// `storage_region` / `AWS_REGION`. The default is `us-east-1`.
    public var storageRegion = "us-east-1"
    /// `storage_access_key` / `AWS_ACCESS_KEY_ID`, `storage_secret_key` / `AWS_SECRET_ACCESS_KEY`,
    /// `storage_session_token` / `AWS_SESSION_TOKEN`: the bucket's credentials.
    public var storageAccessKey: String?
    public var storageSecretKey: String?
    public var storageSessionToken: String?
    /// `storage_public_url` / `STEMIFY_STORAGE_PUBLIC_URL`: a CDN (or public bucket) base URL
    /// serving the bucket's keys; stem URLs are then `BASE/KEY` instead of presigned URLs.
    public var storagePublicURL: String?
    /// `storage_url_expiry` / `STEMIFY_STORAGE_URL_EXPIRY`, seconds a presigned stem URL works.
    /// The default is 3600 (at most 7 days).
    public var storageURLExpiry = 3600
    /// `storage_part_size` / `STEMIFY_STORAGE_PART_SIZE`, bytes: multipart upload part size and
    /// the largest single PUT. The default is 16 MiB (at least 5 MiB).
    public var storagePartSize = 16 << 20

    public init() {}

    /// The job storage: the bucket `storage_url` names (created if missing), else the folder.
    public func openStorage() async throws -> any JobStorage {
        guard let url = storageURL else { return FolderStorage(root: URL(fileURLWithPath: dataDirectory)) }
        let location = try S3Location(url: url, endpoint: storageEndpoint, region: storageRegion)
        let signer = SigV4(accessKey: storageAccessKey ?? "", secretKey: storageSecretKey ?? "", region: storageRegion,
                           sessionToken: storageSessionToken)
        let client = S3Client(location: location, signer: signer, partSize: storagePartSize)
        // Every process checks the store at start-up, so a wrong endpoint or key fails fast.
        do { try await client.prepareBucket() } catch let error as S3Error {
            // The setting most likely at fault; S3Error's text has no credentials in it.
            let key = switch (error.status, error.code) {
            case (nil, _): storageEndpoint == nil ? "storage_region" : "storage_endpoint"
            case (403, _), (_, "InvalidAccessKeyId"?), (_, "SignatureDoesNotMatch"?): "storage_access_key"
            default: "storage_url"
            }
            throw ConfigurationError(key: key, message: "cannot use \(url): \(error)")
        }
        return ObjectStorage(client: client, scratch: URL(fileURLWithPath: dataDirectory), publicBaseURL: storagePublicURL,
                             urlExpiry: storageURLExpiry)
    }

    /// Opens the configured queue: PostgreSQL for a `postgres://` URL, Redis for `redis://`,
    /// else the SQLite file.
    public func openQueue(logger: Logger) async throws -> any JobQueue {
        if let url = queueURL, url.hasPrefix("postgres") {
            return try await PostgresJobQueue(url: url, leaseSeconds: leaseSeconds, maxAttempts: maxAttempts,
                                              retryBackoff: retryBackoffSeconds, logger: logger)
        }
        if let url = queueURL, url.hasPrefix("redis://") {
            return try await RedisJobQueue(url: url, leaseSeconds: leaseSeconds, maxAttempts: maxAttempts,
                                           retryBackoff: retryBackoffSeconds, logger: logger)
        }
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        return try SQLiteJobQueue(path: jobsDatabasePath, leaseSeconds: leaseSeconds, maxAttempts: maxAttempts,
                                  retryBackoff: retryBackoffSeconds)
    }

    /// Resolved paths.
    public var modelDirectory: URL { URL(fileURLWithPath: modelPath ?? "\(dataDirectory)/models") }
    public var jobsDatabasePath: String {
        if let q = queueURL, q.hasPrefix("sqlite:") { return String(q.dropFirst("sqlite:".count)) }
        return "\(dataDirectory)/jobs.sqlite"
    }

    /// Loads a YAML file (optional) and the environment over the defaults.
    ///
    /// - Throws: ``ConfigurationError`` naming the key or variable at fault.
    public static func load(file: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> StemifyConfiguration {
        var c = StemifyConfiguration()
        if let file {
            let text: String
            do { text = try String(contentsOfFile: file, encoding: .utf8) } catch {
                throw ConfigurationError(key: "--config", message: "cannot read \(file)")
            }
            for (key, value) in try ConfigurationReader.yamlPairs(text, file: file) { try c.set(key, value, source: key) }
        }
        for (key, variable) in Self.environmentNames {
            if let value = environment[variable] { try c.set(key, value, source: variable) }
        }
        // The name the service this replaces used for its Redis; the explicit setting wins.
        if environment["STEMIFY_QUEUE_URL"] == nil, let redis = environment["REDIS_URL"] {
            try c.set("queue_url", redis, source: "REDIS_URL")
        }
        try c.validate()
        return c
    }

    /// YAML key → environment variable.
    public static let environmentNames: [(String, String)] = [
        ("host", "STEMIFY_HOST"), ("port", "STEMIFY_PORT"), ("data_dir", "STEMIFY_DATA_DIR"),
        ("model_path", "DEMUCS_MODEL_PATH"), ("youtube_download_dir", "YOUTUBE_DOWNLOAD_DIR"),
        ("max_file_size", "MAX_FILE_SIZE"), ("max_duration", "MAX_DURATION"), ("rate_limit", "RATE_LIMIT"),
        ("rate_limit_period", "RATE_LIMIT_PERIOD"), ("trusted_proxies", "TRUSTED_PROXIES"), ("cors_origins", "STEMIFY_CORS_ORIGINS"), ("api_keys", "STEMIFY_API_KEYS"), ("keys_file", "STEMIFY_KEYS_FILE"),
        ("webhook_allow_hosts", "STEMIFY_WEBHOOK_ALLOW_HOSTS"), ("webhook_secret", "STEMIFY_WEBHOOK_SECRET"),
        ("webhook_timeout", "STEMIFY_WEBHOOK_TIMEOUT"), ("webhook_retry_base", "STEMIFY_WEBHOOK_RETRY_BASE"),
        ("workers", "STEMIFY_WORKERS"), ("threads", "STEMIFY_THREADS"), ("lanes", "STEMIFY_LANES"), ("isa", "STEMIFY_ISA"), ("queue_url", "STEMIFY_QUEUE_URL"),
        ("result_ttl", "RESULT_TTL"), ("upload_expiry", "STEMIFY_UPLOAD_EXPIRY"), ("max_batch_size", "STEMIFY_MAX_BATCH_SIZE"), ("lease", "STEMIFY_LEASE"), ("log_level", "LOG_LEVEL"),
        ("youtube_blocklist", "YOUTUBE_BLOCKLIST"), ("youtube_test_hosts", "YOUTUBE_TEST_HOSTS"),
        ("mp3_bitrate", "MP3_BITRATE"), ("model_download", "MODEL_DOWNLOAD"), ("model_hf_url", "MODEL_HF_URL"), ("model_mirror_url", "MODEL_MIRROR_URL"),
        ("model_legacy_url", "MODEL_LEGACY_URL"), ("max_attempts", "STEMIFY_MAX_ATTEMPTS"),
        ("retry_backoff", "STEMIFY_RETRY_BACKOFF"), ("checkpoint_interval", "STEMIFY_CHECKPOINT_INTERVAL"),
        ("storage_url", "STEMIFY_STORAGE_URL"), ("storage_endpoint", "AWS_ENDPOINT_URL"), ("storage_region", "AWS_REGION"),
        ("storage_access_key", "AWS_ACCESS_KEY_ID"), ("storage_secret_key", "AWS_SECRET_ACCESS_KEY"),
        ("storage_session_token", "AWS_SESSION_TOKEN"), ("storage_public_url", "STEMIFY_STORAGE_PUBLIC_URL"),
        ("storage_url_expiry", "STEMIFY_STORAGE_URL_EXPIRY"), ("storage_part_size", "STEMIFY_STORAGE_PART_SIZE"),
    ]

    mutating func set(_ key: String, _ value: String, source: String) throws {
        func int() throws -> Int {
            guard let v = Int(value.trimmingCharacters(in: .whitespaces)) else { throw ConfigurationError(key: source, message: "'\(value)' is not an integer") }
            return v
        }
        func number() throws -> Double {
            guard let v = Double(value.trimmingCharacters(in: .whitespaces)) else { throw ConfigurationError(key: source, message: "'\(value)' is not a number") }
            return v
        }
        func bool() throws -> Bool {
            switch value.lowercased().trimmingCharacters(in: .whitespaces) {
            case "true", "1", "yes", "on": return true
            case "false", "0", "no", "off": return false
            default: throw ConfigurationError(key: source, message: "'\(value)' is not true or false")
            }
        }
        func list() -> [String] { value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
        switch key {
        case "host": host = value
        case "port": port = try int()
        case "data_dir": dataDirectory = value
        case "model_path": modelPath = value
        case "youtube_download_dir": youtubeDownloadDirectory = value
        case "max_file_size": maxFileSize = try int()
        case "max_duration": maxDurationSeconds = try number()
        case "rate_limit": rateLimit = try int()
        case "rate_limit_period": rateLimitPeriodSeconds = try number()
        case "trusted_proxies": trustedProxies = list()
        case "cors_origins":
            corsOrigins = list()
            for origin in corsOrigins where origin != "*" {
                guard let url = URL(string: origin), ["http", "https"].contains(url.scheme ?? ""), url.host != nil,
                      url.path.isEmpty, url.query == nil
                else { throw ConfigurationError(key: source, message: "'\(origin)' is not an origin (scheme://host[:port], no path) or *") }
            }
        case "workers": workers = try int()
        case "threads": threads = try int()
        case "lanes": lanes = try int()
        case "isa":
            do { instructionSet = try InstructionSet(setting: value) } catch { throw ConfigurationError(key: source, message: error.message) }
        case "queue_url": queueURL = value
        case "result_ttl": resultTTLSeconds = try number()
        case "upload_expiry": uploadExpirySeconds = try number()
        case "max_batch_size": maxBatchSize = try int()
        case "lease": leaseSeconds = try number()
        case "max_attempts": maxAttempts = try int()
        case "retry_backoff": retryBackoffSeconds = try number()
        case "checkpoint_interval": checkpointInterval = try number()
        case "log_level": logLevel = value.lowercased()
        case "youtube_blocklist": youtubeBlocklist = list()
        case "youtube_test_hosts": youtubeTestHosts = list()
        case "mp3_bitrate": mp3Bitrate = try int()
        case "api_keys": apiKeys = try bool()
        case "keys_file": keysFile = value
        case "webhook_allow_hosts": webhookAllowHosts = list()
        case "webhook_secret":
            guard value.count >= 16 else { throw ConfigurationError(key: source, message: "use at least 16 characters") }
            webhookSecret = value
        case "webhook_timeout": webhookTimeoutSeconds = try number()
        case "webhook_retry_base": webhookRetryBaseSeconds = try number()
        case "model_download": modelDownload = try bool()
        case "model_hf_url": modelHuggingFaceURL = value
        case "model_legacy_url": modelLegacyURL = value
        case "model_mirror_url": modelMirrorURL = value.isEmpty ? nil : value
        case "storage_url": storageURL = value.isEmpty ? nil : value
        case "storage_endpoint": storageEndpoint = value.isEmpty ? nil : value
        case "storage_region": storageRegion = value
        case "storage_access_key": storageAccessKey = value
        case "storage_secret_key": storageSecretKey = value
        case "storage_session_token": storageSessionToken = value.isEmpty ? nil : value
        case "storage_public_url": storagePublicURL = value.isEmpty ? nil : value
        case "storage_url_expiry": storageURLExpiry = try int()
        case "storage_part_size": storagePartSize = try int()
        default: throw ConfigurationError(key: source, message: "unknown setting")
        }
    }

    func validate() throws {
        if !(1...65535).contains(port) { throw ConfigurationError(key: "port", message: "must be 1–65535, got \(port)") }
        if maxFileSize <= 0 { throw ConfigurationError(key: "max_file_size", message: "must be positive") }
        if maxDurationSeconds <= 0 { throw ConfigurationError(key: "max_duration", message: "must be positive") }
        if rateLimit < 0 { throw ConfigurationError(key: "rate_limit", message: "must be ≥ 0") }
        if rateLimitPeriodSeconds <= 0 { throw ConfigurationError(key: "rate_limit_period", message: "must be positive") }
        if workers < 0 { throw ConfigurationError(key: "workers", message: "must be ≥ 0") }
        if threads < 1 { throw ConfigurationError(key: "threads", message: "must be ≥ 1") }
        if lanes < 0 { throw ConfigurationError(key: "lanes", message: "must be ≥ 0 (0: automatic)") }
        if maxBatchSize <= 0 { throw ConfigurationError(key: "max_batch_size", message: "must be positive") }
        if uploadExpirySeconds <= 0 { throw ConfigurationError(key: "upload_expiry", message: "must be positive") }
        if leaseSeconds < 1 { throw ConfigurationError(key: "lease", message: "must be ≥ 1 second") }
        if let q = queueURL, !q.hasPrefix("sqlite:") && !q.hasPrefix("postgres://") && !q.hasPrefix("postgresql://") && !q.hasPrefix("redis://") {
            throw ConfigurationError(key: "queue_url", message: "must be sqlite:PATH, postgres://user:password@host:port/database or redis://host:port/db")
        }
        if let url = storageURL { _ = try S3Location(url: url, endpoint: storageEndpoint, region: storageRegion) }
        if storageURL != nil && (storageAccessKey ?? "").isEmpty != (storageSecretKey ?? "").isEmpty {
            throw ConfigurationError(key: "storage_access_key", message: "set both the access key and the secret key, or neither")
        }
        if !(1...604_800).contains(storageURLExpiry) { throw ConfigurationError(key: "storage_url_expiry", message: "must be 1–604800 seconds") }
        if storagePartSize < 5 << 20 { throw ConfigurationError(key: "storage_part_size", message: "must be at least 5 MiB (S3's smallest part)") }
        if let base = storagePublicURL, !(base.hasPrefix("https://") || base.hasPrefix("http://")) {
            throw ConfigurationError(key: "storage_public_url", message: "must be an http:// or https:// URL")
        }
        if maxAttempts < 1 { throw ConfigurationError(key: "max_attempts", message: "must be ≥ 1") }
        if retryBackoffSeconds < 0 { throw ConfigurationError(key: "retry_backoff", message: "must be ≥ 0") }
        if checkpointInterval < 0 { throw ConfigurationError(key: "checkpoint_interval", message: "must be ≥ 0") }
        if !["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(logLevel) {
            throw ConfigurationError(key: "log_level", message: "must be trace, debug, info, notice, warning, error or critical")
        }
        if ![96, 128, 160, 192, 224, 256, 320].contains(mp3Bitrate) {
            throw ConfigurationError(key: "mp3_bitrate", message: "must be one of 96, 128, 160, 192, 224, 256, 320")
        }
    }
}

/// A configuration value that cannot be used; `key` is the YAML key or environment variable.
public struct ConfigurationError: Error, Equatable, CustomStringConvertible {
    public var key: String
    public var message: String
    public var description: String { "configuration '\(key)': \(message)" }
}
