<?php

declare(strict_types=1);

namespace Phase\Sdk\Transport;

/** Sends one job request to one endpoint and returns the node's answer (docs/api.md shape). */
interface TransportInterface
{
    /** @return list<string> the endpoints this transport can reach (node URLs, or "local") */
    public function endpoints(): array;

    /**
     * @param array $request the POST /v1/jobs body
     * @return array the decoded answer
     * @throws \Phase\Sdk\Exception\TransportException unreachable, reset, timed out
     * @throws \Phase\Sdk\Exception\NodeException the node answered with an error
     * @throws \Phase\Sdk\Exception\ProtocolException the answer is not a valid Phase answer
     */
    public function execute(string $endpoint, array $request, float $timeout): array;
}
