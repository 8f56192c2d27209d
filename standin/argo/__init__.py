"""Stand-ins for Argo: the Workflows controller and executor (workflows), and Argo Events' webhook
EventSource and Sensors (events). Each follows the upstream source it names, and refuses
(`Unsupported`, naming the field) what it does not implement."""
