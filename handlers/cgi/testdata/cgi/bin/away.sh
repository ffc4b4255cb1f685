#!/bin/sh
printf 'Location: https://example.com/elsewhere\n\n'
