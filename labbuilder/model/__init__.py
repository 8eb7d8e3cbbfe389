"""What the user wrote, read and validated: errors, YAML with line marks, topology, inventory, recipe. No I/O on hosts."""
