#!/bin/sh
printf 'Content-Type: text/plain\nBad Name: dropped\nX-Good: kept\n\nok\n'
