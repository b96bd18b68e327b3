<?php

declare(strict_types=1);

namespace Phase\Sdk\Tests;

use Phase\Sdk\Transport\HttpTransport;
use Phase\Sdk\Transport\Psr18Transport;
use Phase\Sdk\Transport\RequestTransportInterface;

/**
 * Every HTTP transport the verification suites run over: the built-in ones (PHP streams,
 * ext-curl) and PSR-18 through Guzzle 7 and Symfony HttpClient (Debian's packages), each
 * with Guzzle's PSR-17 factories.
 */
final class Transports
{
    /** For a data provider: name => [name]. */
    public static function all(): array
    {
        $names = ['streams', 'guzzle', 'symfony'];
        if (extension_loaded('curl')) {
            $names[] = 'curl';
        }
        return array_combine($names, array_map(static fn ($n) => [$n], $names));
    }

    /** @param list<string> $urls */
    public static function make(string $name, array $urls, int $maxResponseBytes = 1 << 20): RequestTransportInterface
    {
        $factory = static fn () => new \GuzzleHttp\Psr7\HttpFactory();
        return match ($name) {
            'streams' => new HttpTransport($urls, $maxResponseBytes, false),
            'curl' => new HttpTransport($urls, $maxResponseBytes, true),
            'guzzle' => new Psr18Transport($urls, new \GuzzleHttp\Client(['timeout' => 30]), $factory(), $factory(), $maxResponseBytes),
            'symfony' => new Psr18Transport(
                $urls,
                new \Symfony\Component\HttpClient\Psr18Client(\Symfony\Component\HttpClient\HttpClient::create(['timeout' => 30]), $factory(), $factory()),
                $factory(),
                $factory(),
                $maxResponseBytes,
            ),
        };
    }
}
