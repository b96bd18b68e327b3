<?php

declare(strict_types=1);

namespace Phase\Sdk\Transport;

/** A transport that can send any request to a node (asynchronous jobs need GET and DELETE). */
interface RequestTransportInterface extends TransportInterface
{
    /**
     * One HTTP request to a node: `[status, headers (lowercase names), body]`.
     * @param list<string> $headers "Name: value" lines
     * @return array{int,array<string,string>,string}
     * @throws \Phase\Sdk\Exception\TransportException unreachable, reset, timed out
     * @throws \Phase\Sdk\Exception\ProtocolException the answer is larger than allowed
     */
    public function request(string $endpoint, string $method, string $path, array $headers, ?string $body, float $timeout): array;
}
