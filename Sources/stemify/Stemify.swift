import ArgumentParser

@main
struct Stemify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stemify",
        abstract: "Split music into stems with a native Swift Demucs engine.",
        subcommands: [Separate.self, Serve.self, Worker.self, Models.self, Keys.self]
    )
}
