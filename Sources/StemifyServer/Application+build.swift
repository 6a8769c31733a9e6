import Foundation
public import Hummingbird
public import Logging
public import StemifyCore

/// Everything `stemify serve` runs, built from its configuration; also what the tests start.
///
/// - Parameters:
///   - configuration: deployment settings.
///   - logger: the application's logger (JSON lines from `stemify serve`).
/// - Returns: the application, with in-process workers and the expiry janitor as services.
public func buildApplication(configuration: StemifyConfiguration, logger: Logger) async throws -> some ApplicationProtocol {
    let services = try await StemifyServices.build(configuration: configuration, logger: logger, janitor: true)
    // HEAD on every GET route (RFC 9110 §9.3.2): the GET's headers without its body.
    let router = Router(context: AppRequestContext.self, options: .autoGenerateHeadEndpoints)
    let routes = RouteTable()
    router.add(middleware: WebConventionsMiddleware(routes: routes, allowedOrigins: configuration.corsOrigins))
    router.add(middleware: ErrorMiddleware())
    router.add(middleware: AccessMiddleware(configuration: configuration, keys: APIKeyStore(path: configuration.resolvedKeysFile)))
    let uploads = ResumableUploads(directory: URL(fileURLWithPath: configuration.dataDirectory).appendingPathComponent("resumable"),
                                   expiry: configuration.uploadExpirySeconds)
    let intake = SongIntake(queue: services.queue, models: services.models, configuration: configuration, storage: services.storage,
                            metrics: services.metrics, uploads: uploads)
    StemifyController(intake: intake).addRoutes(to: router)
    BatchesController(intake: intake).addRoutes(to: router)
    UploadsController(uploads: uploads, queue: services.queue, configuration: configuration, metrics: services.metrics)
        .addRoutes(to: router)
    JobsController(queue: services.queue, storage: services.storage, resultTTL: configuration.resultTTLSeconds, metrics: services.metrics).addRoutes(to: router)
    MixController(queue: services.queue, storage: services.storage, configuration: configuration, limiter: intake.validation)
        .addRoutes(to: router)
    ServiceController(queue: services.queue, models: services.models, configuration: configuration, metrics: services.metrics)
        .addRoutes(to: router)
    routes.record(router.routes.map { ("\($0.path)", $0.method) })

    var app = Application(
        router: router,
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "stemify"),
        logger: logger)
    app.addServices(services.background)
    app.addServices(WebhookDispatcher(queue: services.queue, storage: services.storage, configuration: configuration,
                                      secret: try WebhookDispatcher.secret(configuration), logger: logger))
    return app
}
