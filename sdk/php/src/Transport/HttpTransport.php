<?php

declare(strict_types=1);

namespace Phase\Sdk\Transport;

use Phase\Sdk\Exception\NodeException;
use Phase\Sdk\Exception\ProtocolException;
use Phase\Sdk\Exception\TransportException;

/** HTTP to one or more nodes: ext-curl when loaded, PHP streams otherwise. */
final class HttpTransport implements RequestTransportInterface
{
    use JobsOverRequests;

    /** @var list<string> */
    private array $nodes;

    /** @param list<string> $nodes base URLs, e.g. http://10.0.2.15:8700 */
    public function __construct(array $nodes, private readonly int $maxResponseBytes = 64 << 20, private readonly ?bool $useCurl = null)
    {
        $this->nodes = self::checkedNodes($nodes);
    }

    /**
     * Node base URLs as given, checked, without a trailing slash.
     * @return list<string>
     */
    public static function checkedNodes(array $nodes): array
    {
        if ($nodes === []) {
            throw new \InvalidArgumentException('give at least one node URL');
        }
        foreach ($nodes as $n) {
            if (!is_string($n) || !preg_match('#^https?://[^/\s]+/?$#', $n)) {
                throw new \InvalidArgumentException('node URL must look like http://host:port, got ' . json_encode($n));
            }
        }
        return array_map(static fn (string $n) => rtrim($n, '/'), array_values($nodes));
    }

    public function endpoints(): array
    {
        return $this->nodes;
    }

    /**
     * One HTTP request to a node: `[status, headers (lowercase names), body]`.
     * @param list<string> $headers "Name: value" lines
     * @return array{int,array<string,string>,string}
     */
    public function request(string $endpoint, string $method, string $path, array $headers, ?string $body, float $timeout): array
    {
        $url = $endpoint . $path;
        return ($this->useCurl ?? extension_loaded('curl'))
            ? $this->sendCurl($method, $url, $headers, $body, $timeout)
            : $this->sendStreams($method, $url, $headers, $body, $timeout);
    }

    /**
     * A curl handle for `POST /v1/jobs` with `$request`, for callers that run many at once
     * (curl multi); null without ext-curl (or with streams forced). Its answer is capped at
     * the transport's response limit.
     */
    public function jobHandle(string $endpoint, array $request, float $timeout): ?\CurlHandle
    {
        if (!$this->usesCurl()) {
            return null;
        }
        $ch = curl_init("{$endpoint}/v1/jobs");
        curl_setopt_array($ch, [
            CURLOPT_POST => true,
            CURLOPT_POSTFIELDS => json_encode($request, JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR),
            CURLOPT_HTTPHEADER => ['Content-Type: application/json', 'Expect:'],
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_TIMEOUT_MS => (int) ($timeout * 1000),
            CURLOPT_CONNECTTIMEOUT_MS => (int) min($timeout * 1000, 5000),
            CURLOPT_MAXFILESIZE_LARGE => $this->maxResponseBytes,
        ]);
        return $ch;
    }

    /** Whether requests go through ext-curl (else PHP streams). */
    public function usesCurl(): bool
    {
        return $this->useCurl ?? extension_loaded('curl');
    }

    public function maxResponseBytes(): int
    {
        return $this->maxResponseBytes;
    }

    /** Turns an HTTP answer into the decoded job answer or the right exception. */
    public static function decode(string $endpoint, int $status, string $text): array
    {
        try {
            $data = json_decode($text, true, 32, JSON_THROW_ON_ERROR);
        } catch (\JsonException $e) {
            if ($status !== 200) {
                $snippet = substr(preg_replace('/\s+/', ' ', $text) ?? '', 0, 200);
                throw new NodeException($status, 'http_error', $snippet !== '' ? $snippet : 'empty body', $endpoint);
            }
            throw new ProtocolException("node {$endpoint}: answer is not JSON: " . $e->getMessage());
        }
        if (!is_array($data)) {
            throw new ProtocolException("node {$endpoint}: answer is not a JSON object");
        }
        if ($status !== 200) {
            $code = is_string($data['error'] ?? null) ? $data['error'] : 'http_error';
            $msg = is_string($data['message'] ?? null) ? $data['message'] : 'no message';
            throw new NodeException($status, $code, $msg, $endpoint);
        }
        return $data;
    }

    /** @return array{int,array<string,string>,string} */
    private function sendCurl(string $method, string $url, array $headers, ?string $body, float $timeout): array
    {
        $buf = '';
        $tooBig = false;
        $cap = $this->maxResponseBytes;
        $head = [];
        $ch = curl_init($url);
        curl_setopt_array($ch, [
            CURLOPT_CUSTOMREQUEST => $method,
            CURLOPT_HTTPHEADER => array_merge($headers, ['Expect:']),
            CURLOPT_HEADERFUNCTION => static function ($ch, string $line) use (&$head): int {
                if (preg_match('#^HTTP/#', $line)) {
                    $head = [];
                } elseif (str_contains($line, ':')) {
                    [$name, $value] = explode(':', $line, 2);
                    $head[strtolower(trim($name))] = trim($value);
                }
                return strlen($line);
            },
            CURLOPT_TIMEOUT_MS => (int) ($timeout * 1000),
            CURLOPT_CONNECTTIMEOUT_MS => (int) min($timeout * 1000, 5000),
            CURLOPT_WRITEFUNCTION => static function ($ch, string $chunk) use (&$buf, &$tooBig, $cap): int {
                if (strlen($buf) + strlen($chunk) > $cap) {
                    $tooBig = true;
                    return 0; // aborts the transfer
                }
                $buf .= $chunk;
                return strlen($chunk);
            },
        ]);
        if ($body !== null) {
            curl_setopt($ch, CURLOPT_POSTFIELDS, $body);
        }
        $ok = curl_exec($ch);
        $status = (int) curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
        $err = curl_error($ch);
        curl_close($ch);
        if ($tooBig) {
            throw new ProtocolException("node {$url}: answer larger than {$cap} bytes");
        }
        if ($ok === false) {
            throw new TransportException("{$method} {$url}: {$err}");
        }
        return [$status, $head, $buf];
    }

    /** @return array{int,array<string,string>,string} */
    private function sendStreams(string $method, string $url, array $headers, ?string $body, float $timeout): array
    {
        $ctx = stream_context_create(['http' => [
            'method' => $method,
            'header' => implode("\r\n", array_merge($headers, ['Connection: close'])) . "\r\n",
            'content' => $body ?? '',
            'timeout' => $timeout,
            'ignore_errors' => true,
            'protocol_version' => 1.1,
        ]]);
        $err = null;
        set_error_handler(static function (int $no, string $msg) use (&$err): bool {
            $err = $msg;
            return true;
        });
        try {
            $fp = fopen($url, 'rb', false, $ctx);
        } finally {
            restore_error_handler();
        }
        if ($fp === false) {
            throw new TransportException("{$method} {$url}: " . preg_replace('/^fopen\([^)]*\): /', '', (string) $err));
        }
        $meta = stream_get_meta_data($fp);
        $buf = '';
        while (!feof($fp)) {
            $chunk = fread($fp, 65536);
            if ($chunk === false || ($chunk === '' && stream_get_meta_data($fp)['timed_out'])) {
                fclose($fp);
                throw new TransportException("{$method} {$url}: read failed or timed out after {$timeout}s");
            }
            $buf .= $chunk;
            if (strlen($buf) > $this->maxResponseBytes) {
                fclose($fp);
                throw new ProtocolException("node {$url}: answer larger than {$this->maxResponseBytes} bytes");
            }
        }
        fclose($fp);
        $status = 0;
        $head = [];
        foreach ($meta['wrapper_data'] ?? [] as $h) {
            if (preg_match('#^HTTP/\S+\s+(\d{3})#', $h, $m)) {
                $status = (int) $m[1]; // the last status line wins (after redirects)
                $head = [];
            } elseif (str_contains($h, ':')) {
                [$name, $value] = explode(':', $h, 2);
                $head[strtolower(trim($name))] = trim($value);
            }
        }
        if ($status === 0) {
            throw new TransportException("{$method} {$url}: no HTTP status line");
        }
        return [$status, $head, $buf];
    }
}
