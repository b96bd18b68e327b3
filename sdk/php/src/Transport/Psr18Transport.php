<?php

declare(strict_types=1);

namespace Phase\Sdk\Transport;

use Phase\Sdk\Exception\ProtocolException;
use Phase\Sdk\Exception\TransportException;
use Psr\Http\Client\ClientExceptionInterface;
use Psr\Http\Client\ClientInterface;
use Psr\Http\Message\RequestFactoryInterface;
use Psr\Http\Message\StreamFactoryInterface;

/**
 * HTTP through the application's own PSR-18 client (Guzzle, Symfony HttpClient, …) with its
 * PSR-17 factories, so its proxies, TLS settings and middleware apply. Loaded only when used:
 * the rest of the SDK needs none of the PSR interfaces. Timeouts are the client's own (PSR-18
 * has no per-request timeout); answers are read up to `$maxResponseBytes`.
 *
 *   new Client(new Psr18Transport(['http://node:8700'], new \GuzzleHttp\Client(['timeout' => 30]),
 *       $factory = new \GuzzleHttp\Psr7\HttpFactory(), $factory));
 */
final class Psr18Transport implements RequestTransportInterface
{
    use JobsOverRequests;

    /** @var list<string> */
    private array $nodes;

    /** @param list<string> $nodes base URLs, e.g. http://10.0.2.15:8700 */
    public function __construct(
        array $nodes,
        private readonly ClientInterface $client,
        private readonly RequestFactoryInterface $requests,
        private readonly StreamFactoryInterface $streams,
        private readonly int $maxResponseBytes = 64 << 20,
    ) {
        $this->nodes = HttpTransport::checkedNodes($nodes);
    }

    public function endpoints(): array
    {
        return $this->nodes;
    }

    public function request(string $endpoint, string $method, string $path, array $headers, ?string $body, float $timeout): array
    {
        $url = $endpoint . $path;
        $req = $this->requests->createRequest($method, $url);
        foreach ($headers as $line) {
            [$name, $value] = explode(':', $line, 2);
            $req = $req->withHeader(trim($name), trim($value));
        }
        if ($body !== null) {
            $req = $req->withBody($this->streams->createStream($body));
        }
        try {
            $resp = $this->client->sendRequest($req);
        } catch (ClientExceptionInterface $e) {
            throw new TransportException("{$method} {$url}: " . $e->getMessage(), 0, $e);
        }
        $stream = $resp->getBody();
        $text = '';
        while (!$stream->eof()) {
            $text .= $stream->read(65536);
            if (strlen($text) > $this->maxResponseBytes) {
                throw new ProtocolException("node {$url}: answer larger than {$this->maxResponseBytes} bytes");
            }
        }
        $head = [];
        foreach ($resp->getHeaders() as $name => $values) {
            $head[strtolower((string) $name)] = implode(', ', $values);
        }
        return [$resp->getStatusCode(), $head, $text];
    }
}
