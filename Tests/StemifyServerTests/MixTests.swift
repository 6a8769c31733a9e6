import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import StemifyCore
import StemifyEngine
import StemifyServer
import StemifyTestSupport
import Testing

/// Reads a WAV the API served as planar channels.
func planar(_ bytes: ByteBuffer) throws -> [[Float]] {
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("stemify-mix-\(UUID().uuidString).wav")
    defer { try? FileManager.default.removeItem(at: file) }
    try Data(bytes.readableBytesView).write(to: file)
    let source = try WAVFileSource(path: file.path)
    let x = try source.read(from: 0, count: source.frameCount)
    return (0..<source.channelCount).map { c in Array(x.data[(c * source.frameCount)..<((c + 1) * source.frameCount)]) }
}

/// `snr(reference:estimate:)` over every channel.
func snr(_ expected: [[Float]], _ actual: [[Float]]) -> Double {
    snr(reference: Array(expected.joined())[...], estimate: Array(actual.joined())[...])
}

/// Waveform peaks and mix export against a live server with real workers.
@Suite("Mixer API", .serialized)
struct MixTests {
    /// A finished job of a 3 s stereo song (WAV stems, karaoke on); returns its id and stems.
    func finishedJob(_ client: any TestClientProtocol) async throws -> (String, [[String: Any]]) {
        let (headers, body) = multipartParts(BatchTests.options + [("remove_vocals", nil, Data("true".utf8)),
                                                                  ("file", "Café song.wav", Data(UploadTests().wav(seconds: 3)))])
        let accepted = try await client.execute(uri: "/api/stemify", method: .post, headers: headers, body: body)
        #expect(accepted.status == .accepted, "\(String(buffer: accepted.body))")
        let id = try #require(json(accepted.body)["job_id"] as? String)
        _ = try await client.execute(uri: "/api/jobs/\(id)/events", method: .get)
        let job = json(try await client.execute(uri: "/api/jobs/\(id)", method: .get).body)
        #expect(job["status"] as? String == "done")
        return (id, try #require(job["stems"] as? [[String: Any]]))
    }

    func post(_ client: any TestClientProtocol, _ id: String, _ body: String) async throws -> TestResponse {
        try await client.execute(uri: "/api/jobs/\(id)/mix", method: .post, headers: [.contentType: "application/json"],
                                 body: ByteBuffer(string: body))
    }

    @Test("each stem's peaks are the loudest sample of every 1/50 s of the stem the API serves; a mix export is the stems through the page's gain and equal-power pan (≥ 60 dB)",
          arguments: ["folder", "S3"])
    func peaksAndMix(_ storage: String) async throws {
        let configuration = storage == "S3" ? try inFreshBucket(testConfiguration()) : testConfiguration()
        try await withServer(configuration) { client in
            let (id, stems) = try await finishedJob(client)
            var audio: [String: [[Float]]] = [:]
            for stem in stems {
                let name = try #require(stem["name"] as? String)
                let served = try await client.execute(uri: "/api/jobs/\(id)/stems/\(name).wav", method: .get)
                audio[name] = try planar(served.body)
                let peaksURL = try #require(stem["peaks_url"] as? String)
                let response = try await client.execute(uri: peaksURL, method: .get)
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "application/json")
                let peaks = json(response.body)
                let values = try #require(peaks["peaks"] as? [Int])
                let per = try #require(peaks["samples_per_peak"] as? Int)
                let channels = try #require(audio[name])
                #expect(peaks["sample_rate"] as? Int == 44100 && per == 882 && peaks["scale"] as? Int == 1000)
                #expect(peaks["frames"] as? Int == channels[0].count)
                #expect(values.count == (channels[0].count + per - 1) / per)
                // The served stem is 16-bit: its peak may differ from the float one by a rounding step.
                for (k, value) in values.enumerated() {
                    let window = (k * per)..<min((k + 1) * per, channels[0].count)
                    let loudest = channels.map { c in window.map { abs(c[$0]) }.max() ?? 0 }.max() ?? 0
                    #expect(abs(Double(value) - Double(loudest) * 1000) <= 1, "\(name) peak \(k): \(value) vs \(loudest)")
                }
            }
            #expect(try await client.execute(uri: "/api/jobs/\(id)/peaks/nothing", method: .get).status == .notFound)

            // Vocals muted, drums at half, bass panned left, other panned right; instrumental off.
            let settings: [String: (volume: Double, pan: Double, muted: Bool)] = [
                "vocals": (1, 0, true), "drums": (0.5, 0, false), "bass": (1, -0.6, false), "other": (0.8, 0.3, false),
                "instrumental": (1, 0, true),
            ]
            let body = "{\"format\":\"wav\",\"stems\":{" + settings.map { name, s in
                "\"\(name)\":{\"volume\":\(s.volume),\"pan\":\(s.pan),\"muted\":\(s.muted)}"
            }.joined(separator: ",") + "}}"
            let mix = try await post(client, id, body)
            #expect(mix.status == .ok, "\(String(buffer: mix.body))")
            #expect(mix.headers[.contentType] == "audio/wav")
            #expect(mix.headers[.contentDisposition]?.contains("filename*=UTF-8''Caf%C3%A9%20song%20%28mix%29.wav") == true,
                    "\(mix.headers[.contentDisposition] ?? "")")
            let rendered = try planar(mix.body)
            // Web Audio's StereoPannerNode on a stereo input, from the spec (not the server's code).
            let frames = audio["drums"]![0].count
            var expected = [[Float]](repeating: [Float](repeating: 0, count: frames), count: 2)
            for (name, s) in settings where !s.muted {
                let (l, r) = (audio[name]![0], audio[name]![1])
                let x = s.pan <= 0 ? s.pan + 1 : s.pan
                let (gl, gr) = (Float(cos(x * .pi / 2)), Float(sin(x * .pi / 2)))
                let v = Float(s.volume)
                for i in 0..<frames {
                    if s.pan <= 0 {
                        expected[0][i] += v * (l[i] + r[i] * gl)
                        expected[1][i] += v * (r[i] * gr)
                    } else {
                        expected[0][i] += v * (l[i] * gl)
                        expected[1][i] += v * (r[i] + l[i] * gr)
                    }
                }
            }
            try #require(rendered.count == 2 && rendered[0].count == frames)
            let ratio = snr(expected, rendered)
            #expect(ratio >= 60, "mix vs the stems at their settings: \(ratio) dB")
            // Breaking one setting (vocals left in) is far from the mix: the comparison can fail.
            var withVocals = expected
            for c in 0..<2 { for i in 0..<frames { withVocals[c][i] += audio["vocals"]![c][i] } }
            #expect(snr(withVocals, rendered) < 30)

            // Left out, the karaoke instrumental stays out of the mix where the stems it sums are
            // in it: the default mix is the song, and muting vocals (the README's example) is a
            // minus-one, not the backing twice.
            for (body, left) in [("{}", ["drums", "bass", "other", "vocals"]),
                                 ("{\"stems\":{\"vocals\":{\"muted\":true}}}", ["drums", "bass", "other"]),
                                 ("{\"stems\":{\"instrumental\":{}}}", ["drums", "bass", "other", "vocals", "instrumental"])] {
                let response = try await post(client, id, body)
                #expect(response.status == .ok, "\(body): \(String(buffer: response.body))")
                var sum = [[Float]](repeating: [Float](repeating: 0, count: frames), count: 2)
                for name in left {
                    for c in 0..<2 { for i in 0..<frames { sum[c][i] += audio[name]![c][i] } }
                }
                let db = snr(sum, try planar(response.body))
                #expect(db >= 60, "\(body): the mix against \(left.joined(separator: "+")): \(db) dB")
            }

            let mp3 = try await post(client, id, "{\"format\":\"mp3\"}")
            #expect(mp3.status == .ok && mp3.headers[.contentType] == "audio/mpeg")
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("stemify-mix-\(UUID().uuidString).mp3")
            defer { try? FileManager.default.removeItem(at: file) }
            try Data(mp3.body.readableBytesView).write(to: file)
            #expect(abs(try probeDuration(file) - 3) < 0.1)
        }
    }

    @Test("every stem has a 16-bit WAV for the player: an MP3 job's equals the WAV job's stem sample for sample; Range and HEAD work",
          arguments: ["folder", "S3"])
    func playback(_ storage: String) async throws {
        let configuration = storage == "S3" ? try inFreshBucket(testConfiguration()) : testConfiguration()
        try await withServer(configuration) { client in
            let song = Data(UploadTests().wav(seconds: 3))
            func separate(_ format: String) async throws -> (String, [[String: Any]]) {
                let options = BatchTests.options.filter { $0.name != "output_format" } + [("output_format", nil, Data(format.utf8))]
                let (headers, body) = multipartParts(options + [("file", "song.wav", song)])
                let accepted = try await client.execute(uri: "/api/stemify", method: .post, headers: headers, body: body)
                let id = try #require(json(accepted.body)["job_id"] as? String)
                _ = try await client.execute(uri: "/api/jobs/\(id)/events", method: .get)
                let job = json(try await client.execute(uri: "/api/jobs/\(id)", method: .get).body)
                #expect(job["status"] as? String == "done", "\(job)")
                return (id, try #require(job["stems"] as? [[String: Any]]))
            }
            let (wavJob, wavStems) = try await separate("wav")
            let (mp3Job, mp3Stems) = try await separate("mp3")
            #expect(mp3Stems.count == 4 && wavStems.count == 4)
            for stem in mp3Stems {
                let name = try #require(stem["name"] as? String)
                #expect(stem["playback_url"] as? String == "/api/jobs/\(mp3Job)/playback/\(name)")
                let copy = try await client.execute(uri: "/api/jobs/\(mp3Job)/playback/\(name)", method: .get)
                #expect(copy.status == .ok && copy.headers[.contentType] == "audio/wav")
                // The WAV job's stem is the same separation written as 16-bit WAV, and a WAV stem
                // is its own playback copy.
                let wav = try await client.execute(uri: "/api/jobs/\(wavJob)/stems/\(name).wav", method: .get)
                let wavCopy = try await client.execute(uri: "/api/jobs/\(wavJob)/playback/\(name)", method: .get)
                #expect(wavStems.first { $0["name"] as? String == name }?["playback_url"] as? String == "/api/jobs/\(wavJob)/playback/\(name)")
                let a = try planar(copy.body), b = try planar(wav.body)
                #expect(a == b, "\(name): the playback copy differs from the 16-bit stem")
                #expect(Data(wavCopy.body.readableBytesView) == Data(wav.body.readableBytesView))
                // The player reads sample windows by Range.
                let bytes = Data(copy.body.readableBytesView)
                let part = try await client.execute(uri: "/api/jobs/\(mp3Job)/playback/\(name)", method: .get, headers: [.range: "bytes=44-4139"])
                #expect(part.status == .partialContent && part.headers[.contentRange] == "bytes 44-4139/\(bytes.count)")
                #expect(Data(part.body.readableBytesView) == bytes[44...4139])
                let head = try await client.execute(uri: "/api/jobs/\(mp3Job)/playback/\(name)", method: .head)
                #expect(head.status == .ok && head.headers[.contentLength] == "\(bytes.count)")
            }
            // The same song and options again: the stems are copies, their playback copies too.
            let (cachedJob, _) = try await separate("mp3")
            let cached = json(try await client.execute(uri: "/api/jobs/\(cachedJob)", method: .get).body)
            #expect((cached["metrics"] as? [String: Any])?["cache_hit"] as? Bool == true)
            for name in ["drums", "vocals"] {
                let original = try await client.execute(uri: "/api/jobs/\(mp3Job)/playback/\(name)", method: .get)
                let copy = try await client.execute(uri: "/api/jobs/\(cachedJob)/playback/\(name)", method: .get)
                #expect(copy.status == .ok && Data(copy.body.readableBytesView) == Data(original.body.readableBytesView))
            }
            let missing = try await client.execute(uri: "/api/jobs/\(mp3Job)/playback/kazoo", method: .get)
            #expect(missing.status == .notFound && errorCode(missing.body) == "stem_not_found")
        }
    }

    @Test("speed and key in a mix export: 1.5× lasts two thirds; out of range or not whole semitones is invalid_mix")
    func speedAndKey() async throws {
        try await withServer(testConfiguration()) { client in
            let (id, _) = try await finishedJob(client)
            let faster = try await post(client, id, "{\"speed\":1.5,\"semitones\":-2}")
            #expect(faster.status == .ok, "\(String(buffer: faster.body))")
            let rendered = try planar(faster.body)
            #expect(abs(Double(rendered[0].count) / 44100 - 2) < 0.05, "\(rendered[0].count) frames")
            for bad in ["{\"speed\":1.6}", "{\"speed\":0.4}", "{\"speed\":\"fast\"}", "{\"semitones\":7}", "{\"semitones\":-7}",
                        "{\"semitones\":2.5}", "{\"Speed\":1}"] {
                let r = try await post(client, id, bad)
                #expect(r.status == .badRequest && errorCode(r.body) == "invalid_mix", "\(bad): \(String(buffer: r.body))")
            }
        }
    }

    @Test("bad mix requests get invalid_mix, job_not_found or stem_not_found")
    func hostile() async throws {
        try await withServer(testConfiguration { $0.workers = 0 }) { client in
            let (headers, body) = multipartParts(BatchTests.options + [("file", "a.wav", Data(UploadTests().wav(seconds: 1)))])
            let queued = try #require(json(try await client.execute(uri: "/api/stemify", method: .post, headers: headers, body: body).body)["job_id"] as? String)
            let notDone = try await post(client, queued, "{}")
            #expect(notDone.status == .notFound && errorCode(notDone.body) == "stem_not_found")
            let unknown = try await post(client, "nope", "{}")
            #expect(unknown.status == .notFound && errorCode(unknown.body) == "job_not_found")
        }
        try await withServer(testConfiguration()) { client in
            let (id, _) = try await finishedJob(client)
            for bad in ["not json", "[1]", "{\"stems\":[]}", "{\"format\":\"ogg\"}", "{\"format\":3}",
                        "{\"stems\":{\"kazoo\":{}}}", "{\"stems\":{\"drums\":{\"volume\":2.5}}}",
                        "{\"stems\":{\"drums\":{\"volume\":-0.1}}}", "{\"stems\":{\"bass\":{\"pan\":-1.5}}}",
                        "{\"stems\":{\"bass\":{\"muted\":\"yes\"}}}", String(repeating: " ", count: 70_000) + "{}",
                        // Members the schema does not name (additionalProperties: false).
                        "{\"foo\":1}", "{\"Format\":\"mp3\"}", "{\"stems\":{\"vocals\":{\"mute\":true}}}",
                        "{\"format\":\"wav\",\"stems\":{\"drums\":{\"volume\":1,\"gain\":2}}}", "{\"stems\":{\"drums\":null}}"] {
                let r = try await post(client, id, bad)
                #expect(r.status == .badRequest && errorCode(r.body) == "invalid_mix", "\(bad.prefix(40)): \(String(buffer: r.body))")
                #expect(!String(buffer: r.body).contains("/tmp"))
            }
            #expect(try await post(client, id, "{}").status == .ok)
        }
    }
}
